//! A node's store as both ends of a transfer: the `Server.Source` that serves its sealed
//! objects (pinned while they are sent, restored first if spilled) and the `Puller.Sink` that
//! writes a pulled object into a new object of the store.
//!
//! The endpoint has an attachment of its own (its own client entry, pins and refs), so the
//! transfer threads never touch the counts of the process's other attachment, which its
//! JavaScript thread uses without a lock. The transfer threads share this attachment under
//! `lock`, held only for index and allocator calls, never while bytes move.
//!
//! A pulled object stays referenced by the endpoint until `handOver` gives that reference up:
//! the node process that asked for the pull takes its own reference first.

const std = @import("std");
const assert = std.debug.assert;
const Atomic = std.atomic.Value;
const Store = @import("../Store.zig");
const Spiller = @import("../Spiller.zig");
const sys = @import("../sys.zig");
const layout = @import("../layout.zig");
const status = @import("../status.zig");
const Server = @import("Server.zig");
const Puller = @import("Puller.zig");
const wire = @import("wire.zig");

const StoreEndpoint = @This();

/// Bounds the get/restore round trips of one open: each retry means the object was spilled
/// again between its restore and its pin, which a store under steady pressure may do a few times.
const open_attempts_max = 8;

store: *Store,
spiller: Spiller,
lock: ThreadLock = .{},

/// Attaches to the existing store `name` (its spill folder is the store's, in its header).
/// Close with `close`.
pub fn open(name: []const u8) status.Error!*StoreEndpoint {
    const store = try Store.open(name, .{ .create = false, .prefault = false });
    errdefer _ = store.close(false, true);
    const endpoint = std.heap.page_allocator.create(StoreEndpoint) catch return error.System;
    endpoint.* = .{ .store = store, .spiller = Spiller.init(store) };
    return endpoint;
}

/// Drops what the endpoint still holds (pulled objects never handed over included) and
/// detaches. The servers and pulls using it must have ended.
pub fn close(endpoint: *StoreEndpoint) void {
    endpoint.spiller.deinit();
    _ = endpoint.store.close(true, true);
    std.heap.page_allocator.destroy(endpoint);
}

pub fn source(endpoint: *StoreEndpoint) Server.Source {
    return .{ .context = endpoint, .openFn = openForSending, .closeFn = closeAfterSending };
}

pub fn sink(endpoint: *StoreEndpoint) Puller.Sink {
    return .{ .context = endpoint, .createFn = createForPull, .sealFn = sealPulled, .abortFn = abortPulled };
}

/// Gives up the reference the endpoint holds on a pulled object.
pub fn handOver(endpoint: *StoreEndpoint, id: *const wire.ObjectId) status.Error!void {
    endpoint.lock.acquire();
    defer endpoint.lock.release();
    try endpoint.store.dropRef(id);
}

fn fromContext(context: *anyopaque) *StoreEndpoint {
    return @ptrCast(@alignCast(context));
}

// ---------------------------------------------------------------- source

fn openForSending(context: *anyopaque, id: *const wire.ObjectId, wait_ms: u32) Server.OpenError!Server.Opened {
    const endpoint = fromContext(context);
    const deadline_ns = sys.nowNs() + @as(u64, wait_ms) * std.time.ns_per_ms;
    var attempt: u32 = 0;
    while (attempt < open_attempts_max) : (attempt += 1) {
        const region = endpoint.pin(id) catch |err| switch (err) {
            error.Absent => return error.Absent,
            error.NotSealed => {
                const now_ns = sys.nowNs();
                if (now_ns >= deadline_ns) return error.NotSealed;
                endpoint.store.waitSealed(id, deadline_ns - now_ns) catch return error.NotSealed;
                continue;
            },
            error.Spilled => {
                if (endpoint.evictedHere(id)) return error.Absent; // the puller asks another node
                endpoint.restore(id) catch |restore_err| return switch (restore_err) {
                    error.Absent => error.Absent,
                    error.SpillMissing, error.Corrupt, error.SpillDisabled => error.Lost,
                    else => error.Busy,
                };
                continue;
            },
            else => return error.Busy,
        };
        assert(region.offset_bytes + region.size_bytes <= endpoint.store.segment_size_bytes);
        return .{ .size_bytes = region.size_bytes, .where = .{ .memory = endpoint.store.base + region.offset_bytes } };
    }
    return error.Busy;
}

fn closeAfterSending(context: *anyopaque, id: *const wire.ObjectId, opened: Server.Opened) void {
    _ = opened;
    const endpoint = fromContext(context);
    endpoint.lock.acquire();
    defer endpoint.lock.release();
    endpoint.store.release(id) catch unreachable; // pinned by openForSending, and pins keep it.
}

fn pin(endpoint: *StoreEndpoint, id: *const wire.ObjectId) !Store.Region {
    endpoint.lock.acquire();
    defer endpoint.lock.release();
    return endpoint.store.get(id);
}

/// True if this node's copy of `id` is a secondary one that memory pressure evicted.
fn evictedHere(endpoint: *StoreEndpoint, id: *const wire.ObjectId) bool {
    endpoint.lock.acquire();
    defer endpoint.lock.release();
    return endpoint.spiller.isEvictedCopy(id);
}

fn restore(endpoint: *StoreEndpoint, id: *const wire.ObjectId) !void {
    endpoint.lock.acquire();
    defer endpoint.lock.release();
    return endpoint.spiller.restore(id);
}

// ---------------------------------------------------------------- sink

/// A new object marked as a secondary copy, or this node's evicted copy of it claimed to be
/// filled again; either way held by the endpoint until `handOver`.
fn createForPull(context: *anyopaque, id: *const wire.ObjectId, size_bytes: u64) Puller.CreateError![]u8 {
    const endpoint = fromContext(context);
    endpoint.lock.acquire();
    defer endpoint.lock.release();
    const region = endpoint.createMakingRoom(id, size_bytes) catch |err| return switch (err) {
        error.Exists => endpoint.claimEvictedMakingRoom(id, size_bytes),
        else => error.StoreFull,
    };
    assert(region.size_bytes == size_bytes);
    endpoint.store.markCopyElsewhere(id) catch unreachable; // created just now, by us
    return (endpoint.store.base + region.offset_bytes)[0..@intCast(size_bytes)];
}

fn claimEvictedMakingRoom(endpoint: *StoreEndpoint, id: *const wire.ObjectId, size_bytes: u64) Puller.CreateError![]u8 {
    endpoint.store.addRef(id) catch return error.Exists; // spilled and sealed take refs; gone: a new pull
    errdefer endpoint.store.dropRef(id) catch unreachable;
    return endpoint.spiller.claimEvictedCopy(id, size_bytes) catch |err| switch (err) {
        error.StoreFull => {
            _ = endpoint.spiller.evictCopies(size_bytes) catch return error.StoreFull;
            return endpoint.spiller.claimEvictedCopy(id, size_bytes) catch |again| switch (again) {
                error.StoreFull => error.StoreFull,
                else => error.Exists,
            };
        },
        else => error.Exists,
    };
}

/// Creates the object; when the store is full, evicts secondary copies and tries once more.
/// Still full: the caller makes room (drops the pins of views it no longer reads, spills).
fn createMakingRoom(endpoint: *StoreEndpoint, id: *const wire.ObjectId, size_bytes: u64) !Store.Region {
    return endpoint.store.create(id, size_bytes, &.{}) catch |err| {
        if (err != error.StoreFull) return err;
        const evicted = try endpoint.spiller.evictCopies(size_bytes);
        if (evicted.bytes == 0) return err;
        return endpoint.store.create(id, size_bytes, &.{});
    };
}

fn sealPulled(context: *anyopaque, id: *const wire.ObjectId) void {
    const endpoint = fromContext(context);
    endpoint.lock.acquire();
    defer endpoint.lock.release();
    if (endpoint.isRestoring(id)) return endpoint.spiller.endPulledCopy(id, true);
    endpoint.store.seal(id) catch unreachable; // created by createForPull, written by this pull only.
}

fn abortPulled(context: *anyopaque, id: *const wire.ObjectId) void {
    const endpoint = fromContext(context);
    endpoint.lock.acquire();
    defer endpoint.lock.release();
    if (endpoint.isRestoring(id)) {
        endpoint.spiller.endPulledCopy(id, false);
        return endpoint.store.dropRef(id) catch unreachable; // taken by claimEvictedMakingRoom
    }
    endpoint.store.abort(id) catch unreachable; // likewise
}

/// True if the pull of `id` fills an evicted copy (createForPull claimed it) rather than a new
/// object: only this endpoint moves it out of `restoring`.
fn isRestoring(endpoint: *StoreEndpoint, id: *const wire.ObjectId) bool {
    const found = endpoint.store.find(id).?; // held by the pull
    return found.state.tag == .restoring;
}

/// A lock between this process's transfer threads (the store's own lock is between processes).
const ThreadLock = struct {
    word: Atomic(u32) = .init(0),

    fn acquire(self: *ThreadLock) void {
        while (self.word.cmpxchgWeak(0, 1, .acquire, .monotonic) != null) {
            sys.futexWait(&self.word, 1, std.time.ns_per_ms);
        }
    }

    fn release(self: *ThreadLock) void {
        assert(self.word.load(.monotonic) == 1);
        self.word.store(0, .release);
        sys.futexWakeAll(&self.word);
    }
};

comptime {
    assert(layout.id_size_bytes == @sizeOf(wire.ObjectId));
}

// ---------------------------------------------------------------- tests

const testing = std.testing;
const socket = @import("socket.zig");
const test_token = "endpoint-test-token";
const loopback = [4]u8{ 127, 0, 0, 1 };

/// Two stores of one machine, as two nodes: `a` serves, `b` pulls.
const TwoNodes = struct {
    names: [2][48]u8 = undefined,
    a: *Store,
    b: *Store,
    sender: *StoreEndpoint,
    receiver: *StoreEndpoint,
    server: *Server,

    fn start(self: *TwoNodes, capacity_bytes: u64) !void {
        const a_name = try std.fmt.bufPrint(&self.names[0], "endpoint-a-{d}", .{sys.getpid()});
        const b_name = try std.fmt.bufPrint(&self.names[1], "endpoint-b-{d}", .{sys.getpid()});
        self.a = try Store.open(a_name, .{ .capacity_bytes = capacity_bytes, .exclusive = true, .prefault = false });
        self.b = try Store.open(b_name, .{ .capacity_bytes = capacity_bytes, .exclusive = true, .prefault = false });
        self.sender = try StoreEndpoint.open(a_name);
        self.receiver = try StoreEndpoint.open(b_name);
        self.server = try Server.start(testing.allocator, .{ .ip = loopback, .port = 0 }, test_token, self.sender.source(), .{});
    }

    fn stop(self: *TwoNodes) void {
        self.server.stop();
        self.sender.close();
        self.receiver.close();
        _ = self.a.close(true, true);
        _ = self.b.close(true, true);
    }

    fn pull(self: *TwoNodes, id: *const wire.ObjectId) Puller.Error!u64 {
        const sources = [_]socket.Address{.{ .ip = loopback, .port = self.server.port }};
        return Puller.pull(id, .{ .sources = &sources, .token = test_token, .connection_count = 4 }, self.receiver.sink());
    }
};

fn testId(n: u8) wire.ObjectId {
    var id: wire.ObjectId = @splat(0x3c);
    id[0] = n;
    return id;
}

/// Puts `size_bytes` of seeded bytes into `store` as `id`.
fn putSeeded(store: *Store, id: *const wire.ObjectId, size_bytes: u64, seed: u64) !void {
    const region = try store.create(id, size_bytes, &.{});
    var prng = std.Random.DefaultPrng.init(seed);
    prng.random().bytes((store.base + region.offset_bytes)[0..@intCast(size_bytes)]);
    try store.seal(id);
}

fn expectSameBytes(a: *Store, b: *Store, id: *const wire.ObjectId) !void {
    const in_a = try a.get(id);
    defer a.release(id) catch unreachable;
    const in_b = try b.get(id);
    defer b.release(id) catch unreachable;
    try testing.expectEqual(in_a.size_bytes, in_b.size_bytes);
    const size: usize = @intCast(in_a.size_bytes);
    try testing.expect(std.mem.eql(u8, (a.base + in_a.offset_bytes)[0..size], (b.base + in_b.offset_bytes)[0..size]));
}

test "objects pulled from another node's store arrive byte-exact in this one's, and are held until handed over" {
    var nodes: TwoNodes = .{ .a = undefined, .b = undefined, .sender = undefined, .receiver = undefined, .server = undefined };
    try nodes.start(64 << 20);
    defer nodes.stop();
    const sizes = [_]u64{ 0, 1, 4097, wire.chunk_size_max_bytes + 3, 20 << 20 };
    for (sizes, 0..) |size_bytes, i| {
        const id = testId(@intCast(i + 1));
        try putSeeded(nodes.a, &id, size_bytes, i);
        try testing.expectEqual(size_bytes, try nodes.pull(&id));
        try expectSameBytes(nodes.a, nodes.b, &id);
        // The node process takes its reference, then the endpoint gives its own up.
        try nodes.b.addRef(&id);
        try nodes.receiver.handOver(&id);
        try testing.expectEqual(Store.ObjectState.sealed, nodes.b.contains(&id));
        try nodes.b.dropRef(&id);
        try testing.expectEqual(Store.ObjectState.absent, nodes.b.contains(&id));
    }
    // Every pin the sender took to send is gone: the sender's objects go with their last ref.
    for (sizes, 0..) |_, i| {
        const id = testId(@intCast(i + 1));
        try nodes.a.dropRef(&id);
        try testing.expectEqual(Store.ObjectState.absent, nodes.a.contains(&id));
    }
}

test "a pull of an object the other node lacks fails with Absent and leaves nothing here" {
    var nodes: TwoNodes = .{ .a = undefined, .b = undefined, .sender = undefined, .receiver = undefined, .server = undefined };
    try nodes.start(8 << 20);
    defer nodes.stop();
    const id = testId(9);
    try testing.expectError(error.Absent, nodes.pull(&id));
    try testing.expectEqual(Store.ObjectState.absent, nodes.b.contains(&id));
}

test "an object spilled on the sending node is restored and sent byte-exact" {
    var dir_buffer: [64]u8 = undefined;
    const dir = try std.mem.printSentinel(&dir_buffer, "/tmp/objstore-endpoint-test-{d}", .{sys.getpid()}, 0);
    // After the stores' close, which removes their spill files.
    defer _ = std.os.linux.rmdir(dir);
    var nodes: TwoNodes = .{ .a = undefined, .b = undefined, .sender = undefined, .receiver = undefined, .server = undefined };
    try nodes.start(16 << 20);
    defer nodes.stop();
    var spiller = Spiller.init(nodes.a);
    defer spiller.deinit();
    try spiller.configure(dir);
    const id = testId(1);
    try putSeeded(nodes.a, &id, 3 << 20, 77);
    try spiller.spillOne(&id);
    try testing.expectEqual(Store.ObjectState.spilled, nodes.a.contains(&id));
    try testing.expectEqual(@as(u64, 3 << 20), try nodes.pull(&id));
    try expectSameBytes(nodes.a, nodes.b, &id);
}

test "a pulled copy is evicted before this node's own objects, writing nothing, and a pull fills it again" {
    var dir_buffer: [64]u8 = undefined;
    const dir = try std.mem.printSentinel(&dir_buffer, "/tmp/objstore-endpoint-evict-{d}", .{sys.getpid()}, 0);
    defer _ = std.os.linux.rmdir(dir);
    var nodes: TwoNodes = .{ .a = undefined, .b = undefined, .sender = undefined, .receiver = undefined, .server = undefined };
    try nodes.start(16 << 20);
    defer nodes.stop();
    var spiller = Spiller.init(nodes.b);
    defer spiller.deinit();
    try spiller.configure(dir);
    // B's own object is older than the copy: by recency alone it would go first.
    const own = testId(1);
    try putSeeded(nodes.b, &own, 3 << 20, 5);
    const copy = testId(2);
    try putSeeded(nodes.a, &copy, 3 << 20, 6);
    try testing.expectEqual(@as(u64, 3 << 20), try nodes.pull(&copy));
    try nodes.b.addRef(&copy); // the node process's reference, as after a get
    try nodes.receiver.handOver(&copy);
    const outcome = try spiller.spillLru(1);
    try testing.expectEqual(@as(u64, 1), outcome.objects);
    try testing.expectEqual(Store.ObjectState.spilled, nodes.b.contains(&copy));
    try testing.expectEqual(Store.ObjectState.sealed, nodes.b.contains(&own));
    try testing.expectEqual(@as(u64, 3 << 20), nodes.b.segment.header.spilled_total_bytes.load(.monotonic));
    // Out of memory, but not spilled: nothing of it is on disk.
    try testing.expectEqual(@as(u64, 0), nodes.b.stats().spilled_bytes);
    try testing.expectEqual(@as(u64, 0), nodes.b.stats().spilled_objects);
    // Nothing was written (no spill file was ever made): its bytes come back by a pull, and
    // this node no longer serves it.
    try testing.expectEqual(@as(u32, 1), nodes.b.segment.header.spill_file_next.load(.monotonic));
    try testing.expectError(error.SpillMissing, spiller.restore(&copy));
    try testing.expectError(error.Absent, openForSending(nodes.receiver, &copy, 0));
    try testing.expectEqual(@as(u64, 3 << 20), try nodes.pull(&copy));
    try nodes.receiver.handOver(&copy);
    try testing.expectEqual(Store.ObjectState.sealed, nodes.b.contains(&copy));
    try expectSameBytes(nodes.a, nodes.b, &copy);
    // It goes with its last reference, as any object.
    try nodes.b.dropRef(&copy);
    try testing.expectEqual(Store.ObjectState.absent, nodes.b.contains(&copy));
    try nodes.b.dropRef(&own);
    try nodes.a.dropRef(&copy);
}
