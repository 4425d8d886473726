//! Multi-process tests of the native core, run by `zig build test`:
//!
//! 1. stress: N forked processes create, seal, get, reference and drop objects on one shared
//!    set of ids for `--seconds`, in a store small enough to need compaction; every read is
//!    checked against the payload's own seed.
//!    At the end the arena must be back to 0 bytes and 0 objects.
//! 2. crash loop: processes doing the same are SIGKILLed at random and replaced; the survivors
//!    keep checking, and after the last kill the store is reclaimed within 1 s.
//! 3. dead lock holder: a process killed while it holds the allocator lock does not wedge
//!    the store, and one killed mid-create and mid-pin is reclaimed.
//!
//! Usage: objstore-stress [--seconds N] [--processes N]

const std = @import("std");
const objstore = @import("objstore");
const Store = objstore.Store;
const layout = objstore.layout;
const sys = objstore.sys;
const linux = std.os.linux;

const id_space = 512;
const held_max = 16;

const Config = struct { seconds: u32 = 20, processes: u32 = 8 };

pub fn main(init: std.process.Init.Minimal) !void {
    var config = Config{};
    var args = std.process.Args.Iterator.init(init.args);
    _ = args.next();
    while (args.next()) |arg| {
        const value = args.next() orelse return usage();
        if (std.mem.eql(u8, arg, "--seconds")) config.seconds = try std.fmt.parseInt(u32, value, 10) else if (std.mem.eql(u8, arg, "--processes")) config.processes = try std.fmt.parseInt(u32, value, 10) else return usage();
    }
    try deadLockHolder();
    try stress(config);
    try crashLoop(config);
    std.debug.print("stress: 3 passed, 0 failed\n", .{});
}

fn usage() error{Usage} {
    std.debug.print("usage: objstore-stress [--seconds N] [--processes N]\n", .{});
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
        if (!verify(data)) self.mismatches += 1;
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
        return error.StoreNotEmpty;
    }
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
    const compactions = store.header.compactions.load(.monotonic);
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
    var pids: [64]linux.pid_t = undefined;
    for (pids[0..config.processes], 0..) |*pid, i| pid.* = try forkChild(name, 5000 + i, far_ns);
    var kills: u32 = 0;
    while (sys.nowNs() < end_ns) : (kills += 1) {
        sys.sleepNs(random.uintLessThan(u64, 20 * std.time.ns_per_ms));
        const victim = random.uintLessThan(usize, config.processes);
        _ = linux.kill(pids[victim], .KILL);
        const wait_status = waitExit(pids[victim]);
        if (linux.W.IFEXITED(wait_status)) return error.ChildFailed; // only a checksum mismatch exits by itself
        pids[victim] = try forkChild(name, 9000 + kills, far_ns);
    }
    for (pids[0..config.processes]) |pid| {
        _ = linux.kill(pid, .KILL);
        _ = waitExit(pid);
    }
    const reclaim_started_ns = sys.nowNs();
    _ = store.maintain();
    const reclaim_ns = sys.nowNs() - reclaim_started_ns;
    try expectEmpty(store, "crash loop");
    if (reclaim_ns > std.time.ns_per_s) return error.ReclaimTooSlow;
    std.debug.print("crash loop: {d} SIGKILLs, survivors saw 0 mismatches, reclaimed in {d} ms\n", .{ kills, reclaim_ns / std.time.ns_per_ms });
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
