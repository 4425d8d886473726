//! How a process leaves the stores it never closed. A program may end, call exit, throw, or be
//! interrupted without calling `shutdown`; none of that may crash it or leave its refs, its
//! pins, or (when it was the last process) the store itself behind.
//!
//! - The library pins itself in memory (RTLD_NODELETE) at the first open. Node (koffi) and Deno
//!   unload it while tearing the runtime down, before exit, while this library's threads (the
//!   prefault thread, the background spiller) still run its code: they crashed the process.
//! - exit() (Node, Deno) and quick_exit() (Bun) close every store this process left open, as
//!   `objstore_close` with remove-if-last would: threads stopped, refs and pins dropped, the
//!   last process removes the segment and its spill files.
//! - SIGINT, SIGTERM and SIGHUP, while they would kill the process (the default action, or a
//!   one-shot handler that re-raises, like Node's own), fork a reaper and re-raise the signal
//!   with the disposition it had before, so the process dies by it as it would have. The
//!   reaper waits for the process to be dead, then does what any surviving process would:
//!   reclaims it and, if no one is left, removes the store. A handler the program installed
//!   later replaces ours, and its behaviour stands (one that chains to ours, like Deno's, finds
//!   us replaced: we only fork the reaper, which waits at most 10 s for a death that may not
//!   come).
//! - Nothing runs on SIGKILL or a crash: other processes' crash reclaim covers the refs and
//!   pins, and a store whose last process died so is removed by the next `objstore_destroy` of
//!   it (which `init` and `objstore status` run on abandoned stores).

const std = @import("std");
const assert = std.debug.assert;
const linux = std.os.linux;
const posix = std.posix;
const layout = @import("layout.zig");
const sys = @import("sys.zig");
const Store = @import("Store.zig");

/// Open stores one process closes at its exit; past this, a store is left to others' reclaim.
const tracked_max = 64;
/// How long a reaper waits for its process to die before it gives up (it only acts on the dead).
const reaper_wait_max_ms = 10_000;

const EntryState = enum(u32) { free, filling, open, closing };

/// One open store: the caller's handle, closed at exit by `close_handle`, and its name, for a
/// reaper, which attaches anew.
const Entry = struct {
    state: std.atomic.Value(u32) = .init(@intFromEnum(EntryState.free)),
    handle: ?*anyopaque = null,
    /// The process that opened it: a forked child inherits this table and must not act on it.
    owner_pid: u32 = 0,
    name: [layout.name_size_max]u8 = undefined,
    name_size_bytes: usize = 0,
};

pub const CloseFn = *const fn (handle: *anyopaque) void;

var entries: [tracked_max]Entry = @splat(.{});
var close_handle: ?CloseFn = null;
var installed = std.atomic.Value(bool).init(false);

/// Closes `handle` (store `name`) at this process's exit unless `untrack`ed first.
pub fn track(handle: *anyopaque, name: []const u8, close: CloseFn) void {
    assert(name.len > 0 and name.len <= layout.name_size_max);
    installOnce(close);
    for (&entries) |*entry| {
        if (entry.state.cmpxchgStrong(@intFromEnum(EntryState.free), @intFromEnum(EntryState.filling), .acq_rel, .monotonic) != null) continue;
        entry.handle = handle;
        entry.owner_pid = sys.getpid();
        @memcpy(entry.name[0..name.len], name);
        entry.name_size_bytes = name.len;
        entry.state.store(@intFromEnum(EntryState.open), .release);
        return;
    }
}

/// Forgets `handle`: its caller closes it.
pub fn untrack(handle: *anyopaque) void {
    for (&entries) |*entry| {
        if (entry.state.load(.acquire) != @intFromEnum(EntryState.open) or entry.handle != handle) continue;
        entry.handle = null;
        entry.state.store(@intFromEnum(EntryState.free), .release);
        return;
    }
}

fn installOnce(close: CloseFn) void {
    if (installed.swap(true, .acq_rel)) return;
    close_handle = close;
    pinLibrary();
    _ = __cxa_atexit(&closeAllAtExit, null, null);
    _ = at_quick_exit(&closeAllAtQuickExit);
    armSignals();
}

extern "c" fn __cxa_atexit(func: *const fn (?*anyopaque) callconv(.c) void, arg: ?*anyopaque, dso_handle: ?*anyopaque) c_int;
/// C11's, in glibc and musl alike (musl has no `__cxa_at_quick_exit`).
extern "c" fn at_quick_exit(func: *const fn () callconv(.c) void) c_int;

const DlInfo = extern struct {
    fname: ?[*:0]const u8,
    fbase: ?*anyopaque,
    sname: ?[*:0]const u8,
    saddr: ?*anyopaque,
};
extern "c" fn dladdr(address: *const anyopaque, info: *DlInfo) c_int;

/// Marks this library never to be unloaded: a runtime's dlclose at teardown then leaves its
/// code in place for the threads still running it until exit.
fn pinLibrary() void {
    var info: DlInfo = undefined;
    if (dladdr(@ptrCast(&pinLibrary), &info) == 0) return;
    const path = info.fname orelse return;
    // NOLOAD: only the copy already loaded; the reference this takes is never dropped.
    _ = std.c.dlopen(path, .{ .NOW = true, .NOLOAD = true, .NODELETE = true });
}

fn closeAllAtExit(_: ?*anyopaque) callconv(.c) void {
    closeAll();
}

fn closeAllAtQuickExit() callconv(.c) void {
    closeAll();
}

fn closeAll() void {
    const close = close_handle orelse return;
    const pid = sys.getpid();
    for (&entries) |*entry| {
        if (entry.owner_pid != pid) continue;
        if (entry.state.cmpxchgStrong(@intFromEnum(EntryState.open), @intFromEnum(EntryState.closing), .acq_rel, .monotonic) != null) continue;
        close(entry.handle.?);
        entry.handle = null;
        entry.state.store(@intFromEnum(EntryState.free), .release);
    }
}

// ---------------------------------------------------------------- signals

const watched_signals = [_]posix.SIG{ .HUP, .INT, .TERM };
/// The disposition each watched signal had before ours: re-installed before it is re-raised.
var previous: [watched_signals.len]posix.Sigaction = undefined;

/// Installs the reaper on each watched signal whose disposition still ends the process: the
/// default, or a one-shot handler (Node's own restores the terminal, then re-raises). Called
/// at the first open and again by maintenance: a program that removed its own handler may
/// have left the default behind. A signal ignored or handled by the program is left alone.
pub fn armSignals() void {
    if (!installed.load(.acquire)) return;
    for (watched_signals, 0..) |sig, i| {
        var current: posix.Sigaction = undefined;
        posix.sigaction(sig, null, &current);
        if (current.handler.sigaction == &onSignal) continue;
        const handler = current.handler.handler;
        const default = handler == posix.SIG.DFL;
        const one_shot = handler != posix.SIG.IGN and current.flags & posix.SA.RESETHAND != 0;
        if (!default and !one_shot) continue;
        previous[i] = current;
        const action = posix.Sigaction{
            .handler = .{ .sigaction = &onSignal },
            .mask = posix.sigfillset(),
            .flags = posix.SA.SIGINFO | posix.SA.RESTART,
        };
        posix.sigaction(sig, &action, null);
    }
}

fn signalIndex(sig: posix.SIG) ?usize {
    for (watched_signals, 0..) |watched, i| {
        if (watched == sig) return i;
    }
    return null;
}

/// Runs with every signal blocked. Only system calls here: no locks, no allocation.
fn onSignal(sig: posix.SIG, _: *const posix.siginfo_t, _: ?*anyopaque) callconv(.c) void {
    const i = signalIndex(sig) orelse return;
    var current: posix.Sigaction = undefined;
    posix.sigaction(sig, null, &current);
    startReaper();
    // Replaced by a handler that chains to the one before it (Deno installs one for these
    // signals once it has run a child process): that handler decides whether the process
    // dies. If it lives on, the reaper, which acts only once it is dead, gives up.
    if (current.handler.sigaction != &onSignal) return;
    posix.sigaction(sig, &previous[i], null);
    // Pending on this thread until the handler returns; then it acts as it would have.
    _ = linux.tgkill(linux.getpid(), linux.gettid(), sig);
}

fn startReaper() void {
    const parent_pid = sys.getpid();
    const parent_start_time = sys.processStartTime(parent_pid);
    const rc = linux.fork();
    if (linux.errno(rc) != .SUCCESS) return; // no reaper: others' reclaim and the sweep remain
    if (rc != 0) return;
    reap(parent_pid, parent_start_time);
}

/// The reaper: a copy of the dying process with one thread and every signal blocked, so it
/// uses system calls and mmap only (the copied malloc may be locked). It leaves the process
/// group (a terminal's next ^C is not for it) and every inherited file (a pipe it held open
/// would keep a reader of the dead process's output waiting).
fn reap(parent_pid: u32, parent_start_time: u64) noreturn {
    _ = linux.setsid();
    closeInheritedFiles();
    var waited_ms: u32 = 0;
    while (parent_start_time != 0 and sys.isAlive(parent_pid, parent_start_time)) : (waited_ms += 1) {
        if (waited_ms == reaper_wait_max_ms) linux.exit_group(0);
        sys.sleepNs(std.time.ns_per_ms);
    }
    for (&entries) |*entry| {
        if (entry.owner_pid != parent_pid or entry.state.load(.acquire) != @intFromEnum(EntryState.open)) continue;
        reclaimStore(entry.name[0..entry.name_size_bytes]);
    }
    linux.exit_group(0);
}

fn closeInheritedFiles() void {
    const rc = linux.close_range(0, std.math.maxInt(linux.fd_t), .{ .UNSHARE = false, .CLOEXEC = false });
    if (linux.errno(rc) == .SUCCESS) return;
    var fd: i32 = 0;
    while (fd < 4096) : (fd += 1) _ = linux.close(fd);
}

/// What a surviving process does for a dead one: attach, reclaim, and leave as the last.
fn reclaimStore(name: []const u8) void {
    const store = Store.open(name, .{ .create = false, .threads = false }) catch return;
    _ = store.maintain();
    _ = store.close(true, true);
}
