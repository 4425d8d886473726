//! Multi-process tests of the native core, run by `zig build test`:
//!
//! 1. stress: N forked processes create, seal, get, reference and drop objects on one shared
//!    set of ids for `--seconds`, in a store small enough to need compaction; every read is
//!    checked against the payload's own seed.
//!    At the end the arena must be back to 0 bytes and 0 objects.
//! 2. crash loop: processes doing the same are SIGKILLed at random and replaced; the survivors
//!    keep checking. After the last kill every client entry can be taken again (63 processes
//!    attach at once, adopting the dead ones' entries), and once those too are killed the store
//!    is reclaimed within 1 s.
//! 3. dead lock holder: a process killed while it holds the allocator lock does not wedge
//!    the store, and one killed mid-create and mid-pin is reclaimed.
//! 4. panicking holder: a process that panics holding the allocator lock, its stderr a full
//!    pipe, dies at once instead of blocking in the write (and every process with it).
//! 5. leavers: processes close their attachment as they exit (what exits.zig does at exit())
//!    right after another process was SIGKILLed, so each close reclaims the dead one while the
//!    rest allocate; no process may crash (the soak's panic in a rebuilt bitmap) or misread.
//! 6. index churn: in an index small enough that its runs are long (so most deletions move
//!    entries), processes create and delete objects while each looks up its own long-lived
//!    objects after every step, lock-free: never absent, never another object; churners are
//!    SIGKILLed at random (some mid-move, holding the lock). Then the index must be consistent.
//!
//! Any panic of any process fails the test, also one whose process was SIGKILLed mid-panic (the
//! panic handler counts it first, in a page shared across forks).
//!
//! Usage: objstore-stress [--seconds N] [--processes N] [--only holder|panic|churn|crash|leavers|index]

const std = @import("std");
const objstore = @import("objstore");
const Store = objstore.Store;
const layout = objstore.layout;
const sys = objstore.sys;
const linux = std.os.linux;
const assert = std.debug.assert;

/// The library's (a panic never blocks on a full stderr while it holds a store's locks),
/// counted first: a child that the crash loop SIGKILLs mid-panic, its message cut short,
/// would otherwise pass for one of its kills.
pub const panic = std.debug.FullPanic(countedPanic);

/// Panics of every process of the test, in a page shared across forks (mapped first in main).
var panic_count: ?*std.atomic.Value(u32) = null;

fn countedPanic(msg: []const u8, first_trace_addr: ?usize) noreturn {
    @branchHint(.cold);
    if (panic_count) |count| _ = count.fetchAdd(1, .seq_cst);
    objstore.panicNeverBlocking(msg, first_trace_addr orelse @returnAddress());
}

fn mapPanicCount() !void {
    const page = linux.mmap(null, std.heap.pageSize(), .{ .READ = true, .WRITE = true }, .{ .TYPE = .SHARED, .ANONYMOUS = true }, -1, 0);
    if (linux.errno(page) != .SUCCESS) return error.MapFailed;
    panic_count = @ptrFromInt(page);
}

/// Fails if any process of the test panicked (its message is above, maybe cut short).
fn expectNoPanic() !void {
    const count = panic_count.?.load(.seq_cst);
    if (count == 0) return;
    std.debug.print("{d} process(es) of the test panicked (see above; a SIGKILL may have cut the message short)\n", .{count});
    return error.ChildPanicked;
}

const id_space = 512;
const held_max = 16;

const Config = struct {
    seconds: u32 = 20,
    processes: u32 = 8,
    only: ?[]const u8 = null,

    fn selects(config: Config, name: []const u8) bool {
        const only = config.only orelse return true;
        return std.mem.eql(u8, only, name);
    }
};

pub fn main(init: std.process.Init.Minimal) !void {
    var config = Config{};
    var args = std.process.Args.Iterator.init(init.args);
    _ = args.next();
    while (args.next()) |arg| {
        const value = args.next() orelse return usage();
        if (std.mem.eql(u8, arg, "--seconds")) {
            config.seconds = try std.fmt.parseInt(u32, value, 10);
        } else if (std.mem.eql(u8, arg, "--processes")) {
            config.processes = try std.fmt.parseInt(u32, value, 10);
        } else if (std.mem.eql(u8, arg, "--only")) {
            config.only = value;
        } else return usage();
    }
    try mapPanicCount();
    var passed: u32 = 0;
    if (config.selects("holder")) {
        try deadLockHolder();
        passed += 1;
    }
    if (config.selects("panic")) {
        try panickingHolder();
        passed += 1;
    }
    if (config.selects("churn")) {
        try stress(config);
        passed += 1;
    }
    if (config.selects("crash")) {
        try crashLoop(config);
        passed += 1;
    }
    if (config.selects("leavers")) {
        try leavers(config);
        passed += 1;
    }
    if (config.selects("index")) {
        try indexChurn(config);
        passed += 1;
    }
    if (passed == 0) return usage();
    try expectNoPanic();
    std.debug.print("stress: {d} passed, 0 failed\n", .{passed});
}

fn usage() error{Usage} {
    std.debug.print("usage: objstore-stress [--seconds N] [--processes N] [--only holder|panic|churn|crash|leavers|index]\n", .{});
    return error.Usage;
}

fn storeName(buffer: []u8, what: []const u8) []const u8 {
    return std.fmt.bufPrint(buffer, "stress-{s}-{d}", .{ what, sys.getpid() }) catch unreachable;
}

fn idOf(k: u32) layout.ObjectId {
    var id: layout.ObjectId = @splat(0x5a);
    std.mem.writeInt(u32, id[0..4], k, .little);
    return id;
}

/// Payload: [seed u64][bytes from a PRNG seeded with seed]; a reader re-derives every byte.
fn fill(data: []u8, seed: u64) void {
    if (data.len < 8) return @memset(data, @truncate(seed));
    std.mem.writeInt(u64, data[0..8], seed, .little);
    var prng = std.Random.DefaultPrng.init(seed);
    prng.random().bytes(data[8..]);
}

fn verify(data: []const u8) bool {
    if (data.len < 8) {
        for (data) |b| if (b != data[0]) return false;
        return true;
    }
    const seed = std.mem.readInt(u64, data[0..8], .little);
    var prng = std.Random.DefaultPrng.init(seed);
    var chunk: [4096]u8 = undefined;
    var at: usize = 8;
    while (at < data.len) {
        const n = @min(chunk.len, data.len - at);
        prng.random().bytes(chunk[0..n]);
        if (!std.mem.eql(u8, chunk[0..n], data[at..][0..n])) return false;
        at += n;
    }
    return true;
}

const Worker = struct {
    store: *Store,
    prng: std.Random.DefaultPrng,
    held: [held_max]u32 = undefined,
    held_len: usize = 0,
    mismatches: u64 = 0,
    operations: u64 = 0,

    fn step(self: *Worker) void {
        const random = self.prng.random();
        const k = random.uintLessThan(u32, id_space);
        const id = idOf(k);
        self.operations += 1;
        switch (random.uintLessThan(u32, 100)) {
            0...29 => self.createOne(&id, random),
            30...69 => self.readOne(&id),
            70...84 => self.hold(&id, k),
            else => self.dropOne(),
        }
    }

    fn createOne(self: *Worker, id: *const layout.ObjectId, random: std.Random) void {
        const size_bytes: u64 = switch (random.uintLessThan(u32, 20)) {
            0...8 => random.uintLessThan(u64, 512),
            9...17 => random.uintLessThan(u64, 64 * 1024),
            else => random.intRangeLessThan(u64, 256 * 1024, 1024 * 1024), // big ones fragment
        };
        const region = self.store.create(id, size_bytes, &.{}) catch return;
        const data = (self.store.base + region.offset_bytes)[0..@intCast(size_bytes)];
        fill(data, random.int(u64));
        if (random.uintLessThan(u32, 20) == 0) {
            self.store.abort(id) catch unreachable;
            return;
        }
        self.store.seal(id) catch unreachable;
        // Keep the creator's reference for a while (the store fills up and fragments), or drop
        // it now (the store deletes the object unless another process holds it).
        if (self.held_len < held_max and random.boolean()) {
            self.held[self.held_len] = std.mem.readInt(u32, id[0..4], .little);
            self.held_len += 1;
        } else {
            self.store.dropRef(id) catch unreachable;
        }
    }

    fn readOne(self: *Worker, id: *const layout.ObjectId) void {
        const region = self.store.get(id) catch return;
        const data = (self.store.base + region.offset_bytes)[0..@intCast(region.size_bytes)];
        if (!verify(data)) {
            self.mismatches += 1;
            // Said at once: a process the crash tests kill would never report it at its end.
            std.debug.print("child {d}: checksum mismatch reading object {d}\n", .{ sys.getpid(), std.mem.readInt(u32, id[0..4], .little) });
            linux.exit_group(1);
        }
        self.store.release(id) catch unreachable;
    }

    fn hold(self: *Worker, id: *const layout.ObjectId, k: u32) void {
        if (self.held_len == held_max) return self.dropOne();
        self.store.addRef(id) catch return;
        self.held[self.held_len] = k;
        self.held_len += 1;
    }

    fn dropOne(self: *Worker) void {
        if (self.held_len == 0) return;
        self.held_len -= 1;
        self.store.dropRef(&idOf(self.held[self.held_len])) catch unreachable;
    }
};

/// Runs in a forked child: attach, work until the deadline, detach; exit code 1 on any
/// checksum mismatch.
fn childMain(name: []const u8, seed: u64, deadline_ns: u64) noreturn {
    const store = Store.open(name, .{ .create = false }) catch |err| {
        std.debug.print("child: open failed: {s}\n", .{@errorName(err)});
        linux.exit_group(2);
    };
    var worker = Worker{ .store = store, .prng = .init(seed) };
    while (sys.nowNs() < deadline_ns) {
        var burst: u32 = 0;
        while (burst < 64) : (burst += 1) worker.step();
    }
    while (worker.held_len > 0) worker.dropOne();
    _ = store.close(false, true);
    if (worker.mismatches > 0) {
        std.debug.print("child {d}: {d} checksum mismatches in {d} operations\n", .{ sys.getpid(), worker.mismatches, worker.operations });
        linux.exit_group(1);
    }
    linux.exit_group(0);
}

fn forkChild(name: []const u8, seed: u64, deadline_ns: u64) !linux.pid_t {
    const pid = sys.fork() catch return error.ForkFailed;
    if (pid == 0) childMain(name, seed, deadline_ns);
    return @intCast(pid);
}

/// SIGKILLs and reaps child `pid.*`, then zeroes it (reaped: its pid may be reused); true if
/// it died of that SIGKILL.
fn killOne(pid: *linux.pid_t) bool {
    assert(pid.* > 0);
    _ = linux.kill(pid.*, .KILL);
    const ok = killedByUs(pid.*, waitExit(pid.*));
    pid.* = 0;
    return ok;
}

/// Kills and reaps the children still running when a test fails: they run until killed, and
/// left behind they would churn on for hours.
fn killRest(pids: []linux.pid_t) void {
    for (pids) |*pid| {
        if (pid.* == 0) continue;
        _ = linux.kill(pid.*, .KILL);
        _ = waitExit(pid.*);
        pid.* = 0;
    }
}

/// True if `wait_status` says the process died of SIGKILL (ours), else prints how it ended.
fn killedByUs(pid: linux.pid_t, wait_status: u32) bool {
    if (panic_count.?.load(.seq_cst) > 0) {
        std.debug.print("child {d} or another panicked before its SIGKILL\n", .{pid});
        return false;
    }
    if (linux.W.IFSIGNALED(wait_status) and linux.W.TERMSIG(wait_status) == .KILL) return true;
    describeExit(pid, wait_status, "SIGKILL");
    return false;
}

fn describeExit(pid: linux.pid_t, wait_status: u32, expected: []const u8) void {
    if (linux.W.IFSIGNALED(wait_status)) {
        std.debug.print("child {d} died of signal {d}, expected {s}\n", .{ pid, @intFromEnum(linux.W.TERMSIG(wait_status)), expected });
    } else {
        std.debug.print("child {d} exited with code {d}, expected {s}\n", .{ pid, linux.W.EXITSTATUS(wait_status), expected });
    }
}

fn waitExit(pid: linux.pid_t) u32 {
    var wait_status: i32 = 0;
    while (true) {
        const rc = linux.waitpid(pid, &wait_status, 0);
        if (linux.errno(rc) == .INTR) continue;
        break;
    }
    return @bitCast(wait_status);
}

fn expectEmpty(store: *Store, what: []const u8) !void {
    const s = store.stats();
    if (s.used_bytes != 0 or s.object_count != 0 or s.pinned_bytes != 0 or s.attached_processes != 1) {
        std.debug.print("{s}: store not empty: used {d} B, {d} objects, pinned {d} B, {d} attached\n", .{ what, s.used_bytes, s.object_count, s.pinned_bytes, s.attached_processes });
        describeLeft(store);
        return error.StoreNotEmpty;
    }
}

/// What a store that should be empty still holds: each object's state and holders, and the
/// client entries (a leak says who was not reclaimed).
fn describeLeft(store: *Store) void {
    const segment = &store.segment;
    for (segment.index.usedSlots(), 0..) |*slot, i| {
        const state = layout.State.of(slot.state.load(.acquire));
        if (state.tag == .empty) continue;
        const extra = &segment.index.extras[i];
        std.debug.print("  slot {d}: {t} generation {d} nested {d} actor {d} refs {x} pins {x} extent {d} B, object {d}\n", .{
            i,                                 state.tag,               state.generation,                 state.nested, slot.actor.load(.acquire),
            slot.ref_holders.load(.acquire), slot.pin_holders.load(.acquire), extra.extent_size_bytes, slot.id_words[0].load(.monotonic),
        });
    }
    for (segment.clients, 0..) |*entry, i| {
        const word = layout.ClientWord.of(entry.word.load(.acquire));
        if (word.state == .free) continue;
        std.debug.print("  client {d}: {t} reclaimer {d} incarnation {d} pid {d}{s}\n", .{ i, word.state, word.reclaimer, word.incarnation, word.pid, if (i == segment.client_index) " (this process)" else "" });
    }
    std.debug.print("  allocator lock {x}\n", .{segment.header.alloc_lock.load(.acquire)});
}

fn stress(config: Config) !void {
    var name_buffer: [64]u8 = undefined;
    const name = storeName(&name_buffer, "churn");
    // Small enough that creates often find it full: compaction moves objects under readers.
    const store = try Store.open(name, .{ .capacity_bytes = 6 << 20, .exclusive = true });
    defer _ = store.close(true, true);
    const deadline_ns = sys.nowNs() + @as(u64, config.seconds) * std.time.ns_per_s;
    var pids: [64]linux.pid_t = undefined;
    for (pids[0..config.processes], 0..) |*pid, i| pid.* = try forkChild(name, 1000 + i, deadline_ns);
    var failed: u32 = 0;
    for (pids[0..config.processes]) |pid| {
        const wait_status = waitExit(pid);
        if (!linux.W.IFEXITED(wait_status) or linux.W.EXITSTATUS(wait_status) != 0) failed += 1;
    }
    if (failed > 0) return error.ChildFailed;
    try expectEmpty(store, "stress");
    const compactions = store.segment.header.compactions.load(.monotonic);
    if (compactions == 0) return error.NoCompaction; // the test must exercise moving objects
    std.debug.print("stress: {d} processes × {d} s, {d} compactions, 0 mismatches, arena back to 0 bytes\n", .{ config.processes, config.seconds, compactions });
}

fn crashLoop(config: Config) !void {
    var name_buffer: [64]u8 = undefined;
    const name = storeName(&name_buffer, "crash");
    // Small, so that some kills land mid-compaction too.
    const store = try Store.open(name, .{ .capacity_bytes = 6 << 20, .exclusive = true });
    defer _ = store.close(true, true);
    var prng = std.Random.DefaultPrng.init(7);
    const random = prng.random();
    const end_ns = sys.nowNs() + @as(u64, @max(config.seconds / 2, 3)) * std.time.ns_per_s;
    const far_ns = std.math.maxInt(u64);
    var pids: [64]linux.pid_t = @splat(0);
    errdefer killRest(pids[0..config.processes]);
    for (pids[0..config.processes], 0..) |*pid, i| pid.* = try forkChild(name, 5000 + i, far_ns);
    var kills: u32 = 0;
    while (sys.nowNs() < end_ns) : (kills += 1) {
        sys.sleepNs(random.uintLessThan(u64, 20 * std.time.ns_per_ms));
        const victim = random.uintLessThan(usize, config.processes);
        // Only SIGKILL ends these: a checksum mismatch exits 1, a panic aborts.
        if (!killOne(&pids[victim])) {
            describeLeft(store);
            return error.ChildFailed;
        }
        pids[victim] = try forkChild(name, 9000 + kills, far_ns);
    }
    for (pids[0..config.processes]) |*pid| {
        if (!killOne(pid)) return error.ChildFailed;
    }
    try expectEveryEntryTakeable(store, name);
    const reclaim_started_ns = sys.nowNs();
    _ = store.maintain();
    const reclaim_ns = sys.nowNs() - reclaim_started_ns;
    try expectNoPanic();
    try expectEmpty(store, "crash loop");
    if (reclaim_ns > std.time.ns_per_s) return error.ReclaimTooSlow;
    std.debug.print("crash loop: {d} SIGKILLs, survivors saw 0 mismatches, reclaimed in {d} ms\n", .{ kills, reclaim_ns / std.time.ns_per_ms });
}

/// After the crash loop's kills, before anyone reclaims: every entry but ours must be free or
/// a dead process's that a newcomer adopts, whatever its process was doing when killed (an
/// entry nobody can take is lost for good, and a long crash loop runs out of them). One
/// process per entry attaches, each while the ones before it stay; then all are SIGKILLed,
/// for the reclaim after.
fn expectEveryEntryTakeable(store: *Store, name: []const u8) !void {
    var results: [2]i32 = undefined;
    if (linux.errno(linux.pipe(&results)) != .SUCCESS) return error.PipeFailed;
    defer for (results) |fd| sys.close(fd);
    const count = layout.client_count_max - 1;
    var pids: [layout.client_count_max]linux.pid_t = undefined;
    var forked: u32 = 0;
    defer for (pids[0..forked]) |pid| {
        _ = linux.kill(pid, .KILL);
        _ = waitExit(pid);
    };
    var attached: u32 = 0;
    while (forked < count) {
        const pid = sys.fork() catch return error.ForkFailed;
        if (pid == 0) {
            const child = Store.open(name, .{ .create = false, .threads = false }) catch |err| {
                std.debug.print("entry {d} of {d}: open failed: {s}\n", .{ forked + 2, layout.client_count_max, @errorName(err) });
                _ = linux.write(results[1], "f", 1);
                linux.exit_group(2);
            };
            _ = child;
            _ = linux.write(results[1], "o", 1);
            while (true) sys.sleepNs(std.time.ns_per_s);
        }
        pids[forked] = @intCast(pid);
        forked += 1;
        var poll_fds = [1]linux.pollfd{.{ .fd = results[0], .events = linux.POLL.IN, .revents = 0 }};
        if (linux.poll(&poll_fds, 1, 10_000) != 1) break;
        var byte: [1]u8 = undefined;
        if (linux.read(results[0], &byte, 1) != 1 or byte[0] != 'o') break;
        attached += 1;
    }
    if (attached == count) return;
    std.debug.print("crash loop: only {d} of the {d} entries left by killed processes could be taken again\n", .{ attached, count });
    describeLeft(store);
    return error.EntriesLost;
}

/// Workers churn (as in the crash loop) and are SIGKILLed one at a time; right after each kill a
/// "leaver", a process that worked for a while and keeps its refs and pins, closes its
/// attachment with remove-if-last as exit handlers do, so its close finds the dead process and
/// reclaims it (lock, undo, bitmap rebuild) while the workers keep allocating.
fn leavers(config: Config) !void {
    var name_buffer: [64]u8 = undefined;
    const name = storeName(&name_buffer, "leavers");
    const store = try Store.open(name, .{ .capacity_bytes = 6 << 20, .exclusive = true });
    defer _ = store.close(true, true);
    var prng = std.Random.DefaultPrng.init(11);
    const random = prng.random();
    const end_ns = sys.nowNs() + @as(u64, @max(config.seconds / 2, 3)) * std.time.ns_per_s;
    const far_ns = std.math.maxInt(u64);
    var pids: [64]linux.pid_t = @splat(0);
    errdefer killRest(pids[0..config.processes]);
    for (pids[0..config.processes], 0..) |*pid, i| pid.* = try forkChild(name, 20_000 + i, far_ns);
    var rounds: u32 = 0;
    while (sys.nowNs() < end_ns) : (rounds += 1) {
        var go: [2]i32 = undefined;
        if (linux.errno(linux.pipe(&go)) != .SUCCESS) return error.PipeFailed;
        const leaver = try forkLeaver(name, 30_000 + rounds, go);
        sys.sleepNs(random.intRangeLessThan(u64, 5, 30) * std.time.ns_per_ms);
        const victim = random.uintLessThan(usize, config.processes);
        const victim_ok = killOne(&pids[victim]);
        _ = linux.write(go[1], "x", 1); // the victim is dead: leave now
        sys.close(go[0]);
        sys.close(go[1]);
        const leaver_status = waitExit(leaver);
        if (!victim_ok) {
            describeLeft(store);
            return error.ChildFailed;
        }
        if (!linux.W.IFEXITED(leaver_status) or linux.W.EXITSTATUS(leaver_status) != 0) {
            describeExit(leaver, leaver_status, "exit code 0");
            describeLeft(store);
            return error.ChildFailed;
        }
        pids[victim] = try forkChild(name, 40_000 + rounds, far_ns);
    }
    for (pids[0..config.processes]) |*pid| {
        if (!killOne(pid)) return error.ChildFailed;
    }
    _ = store.maintain();
    try expectEmpty(store, "leavers");
    std.debug.print("leavers: {d} closes each reclaiming a SIGKILLed process under allocation, no crash, 0 mismatches\n", .{rounds});
}

/// A leaver: works until told (a byte on `go`), then closes with remove-if-last, holding what
/// it holds, and exits 0.
fn forkLeaver(name: []const u8, seed: u64, go: [2]i32) !linux.pid_t {
    const pid = sys.fork() catch return error.ForkFailed;
    if (pid != 0) return @intCast(pid);
    sys.close(go[1]);
    const store = Store.open(name, .{ .create = false }) catch |err| {
        std.debug.print("leaver: open failed: {s}\n", .{@errorName(err)});
        linux.exit_group(2);
    };
    var worker = Worker{ .store = store, .prng = .init(seed) };
    var poll_fds = [1]linux.pollfd{.{ .fd = go[0], .events = linux.POLL.IN, .revents = 0 }};
    while (linux.poll(&poll_fds, 1, 0) == 0) {
        var burst: u32 = 0;
        while (burst < 16) : (burst += 1) worker.step();
    }
    _ = store.close(true, true);
    linux.exit_group(0);
}

/// A process panics holding the allocator lock while its stderr is a full pipe that nobody
/// reads (in the soak, the reader was itself waiting for that lock): it must die at once
/// rather than block in its message's write, and the lock must pass to the next process.
fn panickingHolder() !void {
    var name_buffer: [64]u8 = undefined;
    const name = storeName(&name_buffer, "panic");
    const store = try Store.open(name, .{ .capacity_bytes = 1 << 20, .exclusive = true });
    defer _ = store.close(true, true);
    var fds: [2]i32 = undefined;
    if (linux.errno(linux.pipe(&fds)) != .SUCCESS) return error.PipeFailed;
    defer for (fds) |fd| sys.close(fd);
    fillPipe(fds[1]);
    const pid: linux.pid_t = @intCast(try sys.fork());
    if (pid == 0) {
        _ = linux.dup2(fds[1], 2);
        const child = Store.open(name, .{ .create = false, .threads = false }) catch linux.exit_group(2);
        child.lock();
        @panic("stress: a panic while holding the allocator lock");
    }
    const deadline_ns = sys.nowNs() + 10 * std.time.ns_per_s;
    var wait_status: u32 = 0;
    while (linux.waitpid(pid, @ptrCast(&wait_status), linux.W.NOHANG) != pid) {
        if (sys.nowNs() > deadline_ns) {
            _ = linux.kill(pid, .KILL);
            _ = waitExit(pid);
            std.debug.print("panicking holder: still alive 10 s after its panic (blocked writing to stderr, holding the lock)\n", .{});
            return error.PanicBlocked;
        }
        sys.sleepNs(10 * std.time.ns_per_ms);
    }
    if (!linux.W.IFSIGNALED(wait_status) or linux.W.TERMSIG(wait_status) != .ABRT) {
        describeExit(pid, wait_status, "SIGABRT");
        return error.ChildFailed;
    }
    // Its panic was counted, and is the only one expected.
    if (panic_count.?.swap(0, .seq_cst) != 1) return error.ChildPanicked;
    // The dead holder's lock is taken over by our next allocation.
    _ = try store.create(&idOf(1), 100, &.{});
    try store.abort(&idOf(1));
    try expectEmpty(store, "panicking holder");
    std.debug.print("panicking holder: died of its panic at once though its stderr was full; lock taken over\n", .{});
}

/// Writes to `fd` (a pipe's write end) until the pipe is full; `fd` stays blocking.
fn fillPipe(fd: i32) void {
    const flags = linux.fcntl(fd, linux.F.GETFL, 0);
    const nonblock: u32 = @bitCast(linux.O{ .NONBLOCK = true });
    _ = linux.fcntl(fd, linux.F.SETFL, flags | nonblock);
    const chunk: [4096]u8 = @splat('x');
    while (linux.errno(linux.write(fd, &chunk, chunk.len)) == .SUCCESS) {}
    _ = linux.fcntl(fd, linux.F.SETFL, flags);
}

/// A process dies holding the allocator lock, one unsealed object, one pin and one ref.
fn deadLockHolder() !void {
    var name_buffer: [64]u8 = undefined;
    const name = storeName(&name_buffer, "holder");
    const store = try Store.open(name, .{ .capacity_bytes = 1 << 20, .exclusive = true });
    defer _ = store.close(true, true);
    const pinned = idOf(1);
    _ = try store.create(&pinned, 100, &.{});
    try store.seal(&pinned);
    var fds: [2]i32 = undefined;
    _ = linux.pipe(&fds);
    const rc = try sys.fork();
    if (rc == 0) {
        const child = Store.open(name, .{ .create = false }) catch linux.exit_group(2);
        _ = child.get(&pinned) catch linux.exit_group(3);
        child.addRef(&pinned) catch linux.exit_group(4);
        _ = child.create(&idOf(2), 5000, &.{}) catch linux.exit_group(5);
        child.lock();
        _ = linux.write(fds[1], "x", 1);
        while (true) sys.sleepNs(std.time.ns_per_s);
    }
    var byte: [1]u8 = undefined;
    _ = linux.read(fds[0], &byte, 1);
    _ = linux.kill(@intCast(rc), .KILL);
    _ = waitExit(@intCast(rc));
    // Our next allocation finds the lock held by a dead process, takes it and reclaims.
    const started_ns = sys.nowNs();
    _ = try store.create(&idOf(3), 100, &.{});
    try store.abort(&idOf(3));
    if (sys.nowNs() - started_ns > std.time.ns_per_s) return error.ReclaimTooSlow;
    if (store.contains(&idOf(2)) != .absent) return error.UnsealedNotReclaimed;
    _ = store.maintain();
    if (store.stats().pinned_bytes != 0) return error.PinNotReclaimed;
    try store.dropRef(&pinned);
    try expectEmpty(store, "dead lock holder");
    std.debug.print("dead lock holder: lock taken over, unsealed object, pin and ref reclaimed\n", .{});
}

// ---------------------------------------------------------------- index churn

const churn_slots = 1024;
const anchors_per_checker = 64;

/// Every id of the test has its home among the first `churn_window` buckets: one long run,
/// where nearly every deletion moves entries that other processes' lookups are passing.
const churn_window = 128;

fn churnId(owner: u32, k: u32, kind: u8) layout.ObjectId {
    var id: layout.ObjectId = @splat(kind);
    std.mem.writeInt(u32, id[0..4], owner, .little);
    std.mem.writeInt(u32, id[4..8], k, .little);
    var salt: u32 = 0;
    while (salt < 1 << 20) : (salt += 1) {
        std.mem.writeInt(u32, id[8..12], salt, .little);
        if (objstore.Index.hashOf(&id) % layout.bucketCount(churn_slots) < churn_window) return id;
    }
    unreachable;
}

/// A checker holds `anchors_per_checker` objects whose first 8 bytes are their own id's
/// first 8 bytes, and churns objects of its own; after every churn step it finds every anchor
/// (lock-free) and checks the bytes. It replaces one anchor per step, so that anchors sit all
/// along the run and keep moving back as the entries before them go. Exit 1 on a miss or a
/// wrong object.
fn checkerMain(name: []const u8, owner: u32, deadline_ns: u64) noreturn {
    const store = Store.open(name, .{ .create = false }) catch linux.exit_group(2);
    var anchors: [anchors_per_checker]layout.ObjectId = undefined;
    for (&anchors, 0..) |*anchor, k| createAnchor(store, anchor, churnId(owner, @intCast(k), 0xa1));
    var prng = std.Random.DefaultPrng.init(owner);
    var counter: u32 = 0;
    var replaced: u32 = anchors_per_checker;
    var misses: u64 = 0;
    var checks: u64 = 0;
    while (sys.nowNs() < deadline_ns) {
        churnStep(store, owner, &counter, prng.random());
        const old = &anchors[replaced % anchors_per_checker];
        store.dropRef(old) catch linux.exit_group(4);
        createAnchor(store, old, churnId(owner, replaced, 0xa1));
        replaced += 1;
        for (&anchors) |*anchor| {
            checks += 1;
            const region = store.get(anchor) catch {
                misses += 1;
                continue;
            };
            if (!std.mem.eql(u8, (store.base + region.offset_bytes)[0..8], anchor[0..8])) misses += 1;
            store.release(anchor) catch linux.exit_group(4);
        }
        if (store.contains(&churnId(owner, 0xffff_ffff, 0xee)) != .absent) misses += 1;
    }
    for (&anchors) |*anchor| store.dropRef(anchor) catch linux.exit_group(4);
    _ = store.close(false, true);
    if (misses > 0) {
        std.debug.print("checker {d}: {d} of {d} lookups of live objects failed\n", .{ owner, misses, checks });
        linux.exit_group(1);
    }
    linux.exit_group(0);
}

fn createAnchor(store: *Store, anchor: *layout.ObjectId, id: layout.ObjectId) void {
    anchor.* = id;
    var attempt: u32 = 0;
    while (attempt < 1000) : (attempt += 1) {
        const region = store.create(anchor, 8, &.{}) catch |err| switch (err) {
            error.IndexFull, error.StoreFull => {
                _ = store.maintain(); // reclaim what killed churners held
                sys.sleepNs(std.time.ns_per_ms);
                continue;
            },
            else => linux.exit_group(3),
        };
        @memcpy((store.base + region.offset_bytes)[0..8], anchor[0..8]);
        store.seal(anchor) catch linux.exit_group(3);
        return;
    }
    linux.exit_group(3);
}

/// Creates a few objects, and deletes a few of the objects created earlier, keeping about
/// `churn_slots / 8` per process alive.
fn churnStep(store: *Store, owner: u32, counter: *u32, random: std.Random) void {
    const kept = churn_slots / 16;
    var n: u32 = 0;
    while (n < 4) : (n += 1) {
        const id = churnId(owner, counter.*, 0xc4);
        counter.* +%= 1;
        _ = store.create(&id, random.uintLessThan(u64, 200), &.{}) catch continue;
        store.seal(&id) catch unreachable;
        if (counter.* > kept) store.dropRef(&churnId(owner, counter.* - kept - 1, 0xc4)) catch {};
    }
}

fn churnerMain(name: []const u8, owner: u32) noreturn {
    const store = Store.open(name, .{ .create = false }) catch linux.exit_group(2);
    var prng = std.Random.DefaultPrng.init(owner);
    var counter: u32 = 0;
    while (true) {
        churnStep(store, owner, &counter, prng.random());
        // As the janitor of every TypeScript process does: reclaim what killed churners held.
        if (counter % 256 == 0) _ = store.maintain();
    }
}

fn forkIndexChild(name: []const u8, owner: u32, checker: bool, deadline_ns: u64) !linux.pid_t {
    const pid = sys.fork() catch return error.ForkFailed;
    if (pid == 0) {
        if (checker) checkerMain(name, owner, deadline_ns);
        churnerMain(name, owner);
    }
    return @intCast(pid);
}

fn indexChurn(config: Config) !void {
    var name_buffer: [64]u8 = undefined;
    const name = storeName(&name_buffer, "index");
    const store = try Store.open(name, .{ .capacity_bytes = 8 << 20, .slot_count = churn_slots, .exclusive = true, .prefault = false });
    defer _ = store.close(true, true);
    const seconds = @max(config.seconds / 2, 3);
    const deadline_ns = sys.nowNs() + @as(u64, seconds) * std.time.ns_per_s;
    const checkers = @max(config.processes / 2, 2);
    const churners = @max(config.processes - checkers, 2);
    var checker_pids: [64]linux.pid_t = undefined;
    var churner_pids: [64]linux.pid_t = undefined;
    var next_owner: u32 = 1;
    for (checker_pids[0..checkers]) |*pid| {
        pid.* = try forkIndexChild(name, next_owner, true, deadline_ns);
        next_owner += 1;
    }
    for (churner_pids[0..churners]) |*pid| {
        pid.* = try forkIndexChild(name, next_owner, false, deadline_ns);
        next_owner += 1;
    }
    var prng = std.Random.DefaultPrng.init(11);
    const random = prng.random();
    var kills: u32 = 0;
    const epoch_before = store.segment.header.index.epoch.load(.monotonic);
    while (sys.nowNs() < deadline_ns) : (kills += 1) {
        sys.sleepNs(random.uintLessThan(u64, 30 * std.time.ns_per_ms));
        const victim = random.uintLessThan(usize, churners);
        _ = linux.kill(churner_pids[victim], .KILL);
        _ = waitExit(churner_pids[victim]);
        churner_pids[victim] = try forkIndexChild(name, next_owner, false, deadline_ns);
        next_owner += 1;
    }
    var failed: u32 = 0;
    for (checker_pids[0..checkers]) |pid| {
        const wait_status = waitExit(pid);
        if (linux.W.IFEXITED(wait_status) and linux.W.EXITSTATUS(wait_status) == 0) continue;
        std.debug.print("index churn: checker {d} ended with wait status {d}\n", .{ pid, wait_status });
        failed += 1;
    }
    for (churner_pids[0..churners]) |pid| {
        _ = linux.kill(pid, .KILL);
        _ = waitExit(pid);
    }
    if (failed > 0) return error.ChildFailed;
    const moves = (store.segment.header.index.epoch.load(.monotonic) - epoch_before) / 2;
    if (moves == 0) return error.NoMoves; // the test must exercise entries moving under lookups
    _ = store.maintain();
    store.lock();
    const consistent = store.segment.index.expectConsistent();
    store.unlock();
    try consistent;
    try expectEmpty(store, "index churn");
    std.debug.print("index churn: {d} checkers, {d} churners, {d} SIGKILLs, {d} deletions that moved entries, 0 lookups missed\n", .{ checkers, churners, kills, moves });
}
