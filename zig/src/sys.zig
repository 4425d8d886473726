//! Thin wrappers over the Linux syscalls the store needs, each returning a Zig error.
//! Zig 0.16+ removed most `std.posix` wrappers, so the core talks to `std.os.linux` directly.

const std = @import("std");
const linux = std.os.linux;
const assert = std.debug.assert;

pub const Error = error{
    NotFound,
    Exists,
    PermissionDenied,
    NoSpace,
    NoMemory,
    Interrupted,
    TimedOut,
    System,
};

/// The errno of the last failed call on this thread, kept for error messages.
pub threadlocal var last_errno: u16 = 0;

pub fn check(rc: usize) Error!usize {
    const e = linux.errno(rc);
    if (e == .SUCCESS) return rc;
    last_errno = @intFromEnum(e);
    return switch (e) {
        .NOENT => error.NotFound,
        .EXIST => error.Exists,
        .ACCES, .PERM => error.PermissionDenied,
        .NOSPC, .DQUOT, .FBIG => error.NoSpace,
        .NOMEM => error.NoMemory,
        .INTR => error.Interrupted,
        .TIMEDOUT => error.TimedOut,
        else => error.System,
    };
}

pub fn open(path: [*:0]const u8, flags: linux.O, mode: linux.mode_t) Error!i32 {
    while (true) {
        const rc = check(linux.open(path, flags, mode)) catch |err| switch (err) {
            error.Interrupted => continue,
            else => return err,
        };
        return @intCast(rc);
    }
}

pub fn close(fd: i32) void {
    assert(fd >= 0);
    _ = linux.close(fd);
}

pub fn unlink(path: [*:0]const u8) Error!void {
    _ = try check(linux.unlink(path));
}

pub fn ftruncate(fd: i32, size_bytes: u64) Error!void {
    _ = try check(linux.ftruncate(fd, @intCast(size_bytes)));
}

pub fn fileSize(fd: i32) Error!u64 {
    var stx: linux.Statx = undefined;
    _ = try check(linux.statx(fd, "", linux.AT.EMPTY_PATH, .{ .SIZE = true }, &stx));
    return stx.size;
}

/// How many names the open file `fd` has: 0 once it was unlinked.
pub fn linkCount(fd: i32) Error!u32 {
    var stx: linux.Statx = undefined;
    _ = try check(linux.statx(fd, "", linux.AT.EMPTY_PATH, .{ .NLINK = true }, &stx));
    return stx.nlink;
}

/// Size of a file at `path`, or NotFound.
pub fn pathSize(path: [*:0]const u8) Error!u64 {
    var stx: linux.Statx = undefined;
    _ = try check(linux.statx(linux.AT.FDCWD, path, 0, .{ .SIZE = true }, &stx));
    return stx.size;
}

/// Bytes an unprivileged user can still allocate on the filesystem of `fd` (fstatfs f_bavail).
pub fn freeBytes(fd: i32) Error!u64 {
    // struct statfs on 64-bit Linux: f_type, f_bsize, f_blocks, f_bfree, f_bavail, … (120 bytes).
    var buffer: [15]u64 = undefined;
    _ = try check(linux.syscall2(.fstatfs, @as(usize, @bitCast(@as(isize, fd))), @intFromPtr(&buffer)));
    return buffer[4] * buffer[1];
}

pub fn mapShared(fd: i32, size_bytes: usize) Error![*]align(4096) u8 {
    const rc = try check(linux.mmap(
        null,
        size_bytes,
        .{ .READ = true, .WRITE = true },
        .{ .TYPE = .SHARED },
        fd,
        0,
    ));
    return @ptrFromInt(rc);
}

/// Replaces a shared mapping with private zero pages that reserve the same addresses, so a
/// JavaScript view that outlives the store reads zeros instead of killing its process.
pub fn neuter(base: [*]align(4096) u8, size_bytes: usize) void {
    const rc = linux.mmap(
        base,
        size_bytes,
        .{ .READ = true, .WRITE = true },
        .{ .TYPE = .PRIVATE, .ANONYMOUS = true, .FIXED = true, .NORESERVE = true },
        -1,
        0,
    );
    if (linux.errno(rc) != .SUCCESS) _ = linux.munmap(base, size_bytes);
}

pub fn mapPrivate(size_bytes: usize) Error![*]align(4096) u8 {
    const rc = try check(linux.mmap(
        null,
        size_bytes,
        .{ .READ = true, .WRITE = true },
        .{ .TYPE = .PRIVATE, .ANONYMOUS = true },
        -1,
        0,
    ));
    return @ptrFromInt(rc);
}

pub fn unmap(base: [*]align(4096) u8, size_bytes: usize) void {
    _ = linux.munmap(base, size_bytes);
}

const madv_populate_write: u32 = 23; // Linux 5.14; absent from std's MADV list.

/// Faults pages in without copying anything; false where the kernel lacks the advice.
pub fn populateWrite(base: [*]u8, size_bytes: usize) bool {
    return linux.errno(linux.madvise(base, size_bytes, madv_populate_write)) == .SUCCESS;
}

/// Through libc, which reads the clock in the vDSO: std's own clock_gettime finds the vDSO only
/// from an executable's start code, and in a library loaded by a runtime made a system call
/// each time (most of a spin's cost).
pub fn nowNs() u64 {
    var ts: std.c.timespec = undefined;
    _ = std.c.clock_gettime(.MONOTONIC, &ts);
    return @as(u64, @intCast(ts.sec)) * std.time.ns_per_s + @as(u64, @intCast(ts.nsec));
}

pub fn sleepNs(duration_ns: u64) void {
    const ts = linux.timespec{
        .sec = @intCast(duration_ns / std.time.ns_per_s),
        .nsec = @intCast(duration_ns % std.time.ns_per_s),
    };
    _ = linux.nanosleep(&ts, null);
}

/// Waits on a futex shared between processes (never FUTEX_PRIVATE: Zig's own are private).
pub fn futexWait(word: *const std.atomic.Value(u32), expected: u32, timeout_ns: u64) void {
    const ts = linux.timespec{
        .sec = @intCast(timeout_ns / std.time.ns_per_s),
        .nsec = @intCast(timeout_ns % std.time.ns_per_s),
    };
    _ = linux.futex_4arg(&word.raw, .{ .cmd = .WAIT, .private = false }, expected, &ts);
}

pub fn futexWakeAll(word: *const std.atomic.Value(u32)) void {
    _ = linux.futex_3arg(&word.raw, .{ .cmd = .WAKE, .private = false }, std.math.maxInt(i32));
}

/// fork(2) through libc, for the tests that fork: its atfork handlers reset malloc's locks in
/// the child. A raw fork of a process with threads (a store's prefault or spill thread) can copy
/// a malloc lock held mid-operation, and the child's next free then waits forever.
/// Returns 0 in the child, the child's pid in the parent.
pub fn fork() Error!u32 {
    const rc = std.c.fork();
    if (rc < 0) return error.System;
    return @intCast(rc);
}

pub fn getpid() u32 {
    return @intCast(linux.getpid());
}

pub fn getuid() u32 {
    return linux.getuid();
}

/// What liveness checks read of a process: field 3 (state), 20 (threads) and 22 (start time
/// in clock ticks) of /proc/<pid>/stat.
pub const ProcessStat = struct { state: u8, thread_count: u64, start_time: u64 };

/// The process's stat fields, or null when it does not exist (or its stat is unreadable).
pub fn processStat(pid: u32) ?ProcessStat {
    var path_buffer: [64]u8 = undefined;
    const path = std.mem.printSentinel(&path_buffer, "/proc/{d}/stat", .{pid}, 0) catch return null;
    const fd = open(path, .{ .ACCMODE = .RDONLY, .CLOEXEC = true }, 0) catch return null;
    defer close(fd);
    var buffer: [1024]u8 = undefined;
    const rc = linux.read(fd, &buffer, buffer.len);
    if (linux.errno(rc) != .SUCCESS or rc == 0) return null;
    return parseStat(buffer[0..rc]);
}

/// A process identity that survives pid reuse: the pid plus its start time in clock ticks.
/// Zero when the process does not exist.
pub fn processStartTime(pid: u32) u64 {
    const stat = processStat(pid) orelse return 0;
    return stat.start_time;
}

/// Fields of a /proc/<pid>/stat line; the command name (field 2) may contain spaces and
/// parentheses, so fields are counted from the last ')'.
fn parseStat(line: []const u8) ?ProcessStat {
    const close_paren = std.mem.lastIndexOfScalar(u8, line, ')') orelse return null;
    var fields = std.mem.tokenizeScalar(u8, line[close_paren + 1 ..], ' ');
    var result = ProcessStat{ .state = 0, .thread_count = 0, .start_time = 0 };
    var field_number: u32 = 3;
    while (fields.next()) |field| : (field_number += 1) {
        switch (field_number) {
            3 => result.state = field[0],
            20 => result.thread_count = std.fmt.parseInt(u64, field, 10) catch return null,
            22 => {
                result.start_time = std.fmt.parseInt(u64, field, 10) catch return null;
                return result;
            },
            else => {},
        }
    }
    return null;
}

/// True while the process that registered as (pid, start_time) runs. A zombie is dead: it
/// runs no code, and it stays a zombie until its parent reaps it, which a parent waiting on
/// the store (a test, a shell) may never do first. A zombie leader with other threads still
/// running (its main thread called pthread_exit) is alive.
pub fn isAlive(pid: u32, start_time: u64) bool {
    assert(pid != 0);
    const stat = processStat(pid) orelse return false;
    if (stat.start_time != start_time) return false;
    return running(stat);
}

/// Whether process `pid` exists and has not exited, whatever its start time: for a process
/// whose start time is not known yet. A reused pid passes: what waits on it then waits for
/// that process to end too.
pub fn pidAlive(pid: u32) bool {
    assert(pid != 0);
    const stat = processStat(pid) orelse return false;
    return running(stat);
}

fn running(stat: ProcessStat) bool {
    const exited = stat.state == 'Z' or stat.state == 'X' or stat.state == 'x';
    return !exited or stat.thread_count > 1;
}

test "parseStat skips a command name with spaces and parentheses" {
    const line = "1234 (a b) c) Z 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 7 18 424242 20 21";
    const stat = parseStat(line).?;
    try std.testing.expectEqual(@as(u64, 424242), stat.start_time);
    try std.testing.expectEqual(@as(u64, 7), stat.thread_count);
    try std.testing.expectEqual(@as(u8, 'Z'), stat.state);
    try std.testing.expect(parseStat("1234 (x) S 1 2") == null);
}

test "a zombie is dead to liveness checks" {
    const pid = try fork();
    if (pid == 0) linux.exit_group(0);
    // Not reaped yet: a zombie until waitpid below.
    var stat = processStat(pid);
    var turns: u32 = 0;
    while (stat != null and stat.?.state != 'Z' and turns < 5000) : (turns += 1) {
        sleepNs(std.time.ns_per_ms);
        stat = processStat(pid);
    }
    try std.testing.expect(stat != null and stat.?.state == 'Z');
    try std.testing.expect(!isAlive(pid, stat.?.start_time));
    var wait_status: i32 = 0;
    _ = linux.waitpid(@intCast(pid), &wait_status, 0);
}

test "processStartTime of this process is stable and non-zero" {
    const start = processStartTime(getpid());
    try std.testing.expect(start != 0);
    try std.testing.expect(isAlive(getpid(), start));
    try std.testing.expect(!isAlive(getpid(), start + 1));
}
