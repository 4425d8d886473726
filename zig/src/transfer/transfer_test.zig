//! Pulls between a Server and the Puller over loopback, with an in-memory source and sink:
//! sizes from 0 bytes to many chunks over several connections, a corrupted chunk, a wrong
//! token, a missing object, a source that fails mid-transfer, an object sealed late.

const std = @import("std");
const testing = std.testing;
const linux = std.os.linux;
const socket = @import("socket.zig");
const wire = @import("wire.zig");
const Server = @import("Server.zig");
const Puller = @import("Puller.zig");
const sys = @import("../sys.zig");

const loopback = [4]u8{ 127, 0, 0, 1 };
const token = "test-cluster-token";

/// One object a test source serves: from memory, or from a file.
const Served = struct {
    id: wire.ObjectId,
    bytes: []const u8,
    file: ?struct { fd: i32, offset_bytes: u64 } = null,
    sealed: std.atomic.Value(bool) = .init(true),
};

const TestSource = struct {
    objects: []Served,
    opened: std.atomic.Value(u32) = .init(0),

    fn source(self: *TestSource) Server.Source {
        return .{ .context = self, .openFn = open, .closeFn = close };
    }

    fn open(context: *anyopaque, id: *const wire.ObjectId, wait_ms: u32) Server.OpenError!Server.Opened {
        const self: *TestSource = @ptrCast(@alignCast(context));
        for (self.objects) |*served| {
            if (!std.mem.eql(u8, &served.id, id)) continue;
            var waited_ms: u32 = 0;
            while (!served.sealed.load(.acquire)) : (waited_ms += 1) {
                if (waited_ms >= wait_ms) return error.NotSealed;
                sys.sleepNs(std.time.ns_per_ms);
            }
            _ = self.opened.fetchAdd(1, .monotonic);
            if (served.file) |file| {
                return .{ .size_bytes = served.bytes.len, .where = .{ .file = .{ .fd = file.fd, .offset_bytes = file.offset_bytes } } };
            }
            return .{ .size_bytes = served.bytes.len, .where = .{ .memory = served.bytes.ptr } };
        }
        return error.Absent;
    }

    fn close(context: *anyopaque, id: *const wire.ObjectId, opened: Server.Opened) void {
        _ = id;
        _ = opened;
        const self: *TestSource = @ptrCast(@alignCast(context));
        _ = self.opened.fetchSub(1, .monotonic);
    }
};

const TestSink = struct {
    bytes: []u8 = &.{},
    created: u32 = 0,
    sealed: bool = false,
    aborted: bool = false,

    fn sink(self: *TestSink) Puller.Sink {
        return .{ .context = self, .createFn = create, .sealFn = seal, .abortFn = abort };
    }

    fn create(context: *anyopaque, id: *const wire.ObjectId, size_bytes: u64) Puller.CreateError![]u8 {
        _ = id;
        const self: *TestSink = @ptrCast(@alignCast(context));
        self.created += 1;
        self.bytes = testing.allocator.alloc(u8, size_bytes) catch return error.StoreFull;
        @memset(self.bytes, 0xee);
        return self.bytes;
    }

    fn seal(context: *anyopaque, id: *const wire.ObjectId) void {
        _ = id;
        const self: *TestSink = @ptrCast(@alignCast(context));
        self.sealed = true;
    }

    fn abort(context: *anyopaque, id: *const wire.ObjectId) void {
        _ = id;
        const self: *TestSink = @ptrCast(@alignCast(context));
        self.aborted = true;
    }

    fn deinit(self: *TestSink) void {
        testing.allocator.free(self.bytes);
    }
};

fn idOf(n: u8) wire.ObjectId {
    var id: wire.ObjectId = @splat(0);
    id[0] = n;
    id[27] = 0x5a;
    return id;
}

fn patterned(allocator: std.mem.Allocator, size: usize, seed: u64) ![]u8 {
    const bytes = try allocator.alloc(u8, size);
    var prng = std.Random.DefaultPrng.init(seed);
    prng.random().bytes(bytes);
    return bytes;
}

fn startServer(source: *TestSource, options: Server.Options) !*Server {
    return Server.start(testing.allocator, .{ .ip = loopback, .port = 0 }, token, source.source(), options);
}

fn addressOf(server: *const Server) socket.Address {
    return .{ .ip = loopback, .port = server.port };
}

test "objects of 0 bytes to many chunks arrive byte-exact, over 1 to 4 connections" {
    const sizes = [_]usize{ 0, 1, 4097, wire.chunk_size_max_bytes + 3, 40 << 20 };
    var objects: [sizes.len]Served = undefined;
    for (sizes, 0..) |size, i| objects[i] = .{ .id = idOf(@intCast(i + 1)), .bytes = try patterned(testing.allocator, size, i) };
    defer for (objects) |o| testing.allocator.free(o.bytes);
    var source: TestSource = .{ .objects = &objects };
    const server = try startServer(&source, .{});
    defer server.stop();
    for (objects) |served| {
        for ([_]u32{ 1, 4 }) |connection_count| {
            var sink: TestSink = .{};
            defer sink.deinit();
            const sources = [_]socket.Address{addressOf(server)};
            const size = try Puller.pull(&served.id, .{ .sources = &sources, .token = token, .connection_count = connection_count }, sink.sink());
            try testing.expectEqual(served.bytes.len, size);
            try testing.expect(sink.sealed and !sink.aborted);
            try testing.expectEqualSlices(u8, served.bytes, sink.bytes);
        }
    }
    try testing.expectEqual(@as(u32, 0), source.opened.load(.monotonic));
}

test "any chunk size a server picks arrives byte-exact (receivers take any up to the maximum)" {
    // An odd size, the default and the maximum (what servers before the default sent).
    const chunk_sizes = [_]u32{ 4097, wire.chunk_size_default_bytes, wire.chunk_size_max_bytes };
    const size = 2 * wire.chunk_size_max_bytes + 5;
    var objects = [_]Served{.{ .id = idOf(1), .bytes = try patterned(testing.allocator, size, 13) }};
    defer testing.allocator.free(objects[0].bytes);
    var source: TestSource = .{ .objects = &objects };
    for (chunk_sizes) |chunk_size| {
        const server = try startServer(&source, .{ .chunk_size_bytes = chunk_size });
        defer server.stop();
        for ([_]u32{ 1, 4 }) |connection_count| {
            var sink: TestSink = .{};
            defer sink.deinit();
            const sources = [_]socket.Address{addressOf(server)};
            _ = try Puller.pull(&objects[0].id, .{ .sources = &sources, .token = token, .connection_count = connection_count }, sink.sink());
            try testing.expectEqualSlices(u8, objects[0].bytes, sink.bytes);
        }
    }
    try testing.expectError(error.InvalidArgument, startServer(&source, .{ .chunk_size_bytes = wire.chunk_size_max_bytes + 1 }));
}

test "a chunk corrupted on the way is fetched again; the object is exact" {
    const size = 3 * wire.chunk_size_max_bytes + 5;
    var objects = [_]Served{.{ .id = idOf(1), .bytes = try patterned(testing.allocator, size, 7) }};
    defer testing.allocator.free(objects[0].bytes);
    var source: TestSource = .{ .objects = &objects };
    for ([_]u32{ wire.chunk_size_default_bytes, wire.chunk_size_max_bytes }) |chunk_size| {
        const server = try startServer(&source, .{ .corrupt_chunk_number = 2, .chunk_size_bytes = chunk_size });
        defer server.stop();
        var sink: TestSink = .{};
        defer sink.deinit();
        const sources = [_]socket.Address{addressOf(server)};
        _ = try Puller.pull(&objects[0].id, .{ .sources = &sources, .token = token, .connection_count = 1 }, sink.sink());
        try testing.expectEqualSlices(u8, objects[0].bytes, sink.bytes);
        // Every chunk once, the corrupted one twice.
        const chunk_count: u32 = @intCast(std.math.divCeil(usize, size, chunk_size) catch unreachable);
        try testing.expectEqual(chunk_count + 1, server.chunks_sent.load(.monotonic));
    }
}

test "a wrong token gets nothing: no object is created" {
    var objects = [_]Served{.{ .id = idOf(1), .bytes = "secret bytes" }};
    var source: TestSource = .{ .objects = &objects };
    const server = try startServer(&source, .{});
    defer server.stop();
    var sink: TestSink = .{};
    defer sink.deinit();
    const sources = [_]socket.Address{addressOf(server)};
    const outcome = Puller.pull(&objects[0].id, .{ .sources = &sources, .token = "not-the-token" }, sink.sink());
    try testing.expectError(error.PeerNotAuthenticated, outcome);
    try testing.expectEqual(@as(u32, 0), sink.created);
    try testing.expectEqual(@as(u32, 0), server.chunks_sent.load(.monotonic));
}

test "an object the source lacks is Absent; one never sealed is NotSealed after the wait" {
    var objects = [_]Served{.{ .id = idOf(1), .bytes = "x", .sealed = .init(false) }};
    var source: TestSource = .{ .objects = &objects };
    const server = try startServer(&source, .{});
    defer server.stop();
    var sink: TestSink = .{};
    defer sink.deinit();
    const sources = [_]socket.Address{addressOf(server)};
    try testing.expectError(error.Absent, Puller.pull(&idOf(9), .{ .sources = &sources, .token = token }, sink.sink()));
    try testing.expectError(error.NotSealed, Puller.pull(&objects[0].id, .{ .sources = &sources, .token = token, .wait_ms = 20 }, sink.sink()));
    try testing.expectEqual(@as(u32, 0), sink.created);
}

fn sealLater(served: *Served) void {
    sys.sleepNs(50 * std.time.ns_per_ms);
    served.sealed.store(true, .release);
}

test "a pull waits at the source for an object sealed after it asked" {
    var objects = [_]Served{.{ .id = idOf(1), .bytes = "sealed late", .sealed = .init(false) }};
    var source: TestSource = .{ .objects = &objects };
    const server = try startServer(&source, .{});
    defer server.stop();
    const sealer = try std.Thread.spawn(.{}, sealLater, .{&objects[0]});
    defer sealer.join();
    var sink: TestSink = .{};
    defer sink.deinit();
    const sources = [_]socket.Address{addressOf(server)};
    _ = try Puller.pull(&objects[0].id, .{ .sources = &sources, .token = token, .wait_ms = 5000 }, sink.sink());
    try testing.expectEqualStrings("sealed late", sink.bytes);
}

test "a source whose copy breaks mid-transfer hands over to the next; a dead address is skipped" {
    const size = 3 * wire.chunk_size_max_bytes;
    const bytes = try patterned(testing.allocator, size, 11);
    defer testing.allocator.free(bytes);
    // The first source serves from a spill-like file that holds only the first chunk.
    const path = "/tmp/objstore-transfer-test.spill";
    const fd: i32 = @intCast(linux.open(path, .{ .ACCMODE = .RDWR, .CREAT = true, .TRUNC = true, .CLOEXEC = true }, 0o600));
    try testing.expect(fd >= 0);
    defer _ = linux.close(fd);
    defer _ = linux.unlink(path);
    try testing.expectEqual(@as(usize, wire.chunk_size_max_bytes), linux.pwrite(fd, bytes.ptr, wire.chunk_size_max_bytes, 0));
    var broken = [_]Served{.{ .id = idOf(1), .bytes = bytes, .file = .{ .fd = fd, .offset_bytes = 0 } }};
    var whole = [_]Served{.{ .id = idOf(1), .bytes = bytes }};
    var broken_source: TestSource = .{ .objects = &broken };
    var whole_source: TestSource = .{ .objects = &whole };
    const broken_server = try startServer(&broken_source, .{});
    defer broken_server.stop();
    const whole_server = try startServer(&whole_source, .{});
    defer whole_server.stop();
    // Nothing listens on the listener's port once it is closed.
    const dead_listener = try socket.listen(.{ .ip = loopback, .port = 0 }, 1);
    const dead: socket.Address = .{ .ip = loopback, .port = try socket.localPort(dead_listener) };
    socket.close(dead_listener);
    var sink: TestSink = .{};
    defer sink.deinit();
    const sources = [_]socket.Address{ addressOf(broken_server), dead, addressOf(whole_server) };
    _ = try Puller.pull(&whole[0].id, .{ .sources = &sources, .token = token, .connection_count = 1 }, sink.sink());
    try testing.expectEqualSlices(u8, bytes, sink.bytes);
    try testing.expect(whole_server.chunks_sent.load(.monotonic) >= 3);
}

test "sources that lack the object are passed over, for the size and for every part" {
    const size = 40 << 20;
    const bytes = try patterned(testing.allocator, size, 5);
    defer testing.allocator.free(bytes);
    var none = [_]Served{};
    var whole = [_]Served{.{ .id = idOf(1), .bytes = bytes }};
    var lacking_source: TestSource = .{ .objects = &none };
    var whole_source: TestSource = .{ .objects = &whole };
    const lacking_server = try startServer(&lacking_source, .{});
    defer lacking_server.stop();
    const whole_server = try startServer(&whole_source, .{});
    defer whole_server.stop();
    // Parts are spread over the sources: with 4 connections, some start at the lacking one.
    for ([_][2]socket.Address{
        .{ addressOf(lacking_server), addressOf(whole_server) },
        .{ addressOf(whole_server), addressOf(lacking_server) },
    }) |sources| {
        var sink: TestSink = .{};
        defer sink.deinit();
        _ = try Puller.pull(&whole[0].id, .{ .sources = &sources, .token = token, .connection_count = 4 }, sink.sink());
        try testing.expectEqualSlices(u8, bytes, sink.bytes);
    }
}

test "more pulls at once than the server has connections: the others wait their turn, none fails" {
    const size = 3 * wire.chunk_size_max_bytes + 7;
    var objects = [_]Served{.{ .id = idOf(1), .bytes = try patterned(testing.allocator, size, 17) }};
    defer testing.allocator.free(objects[0].bytes);
    var source: TestSource = .{ .objects = &objects };
    const server = try startServer(&source, .{ .connection_count_max = 2 });
    defer server.stop();
    const Puller_ = struct {
        fn run(id: *const wire.ObjectId, address: socket.Address, sink: *TestSink, outcome: *?Puller.Error) void {
            const sources = [_]socket.Address{address};
            _ = Puller.pull(id, .{ .sources = &sources, .token = token, .connection_count = 1 }, sink.sink()) catch |err| {
                outcome.* = err;
            };
        }
    };
    var sinks: [6]TestSink = @splat(.{});
    defer for (&sinks) |*sink| sink.deinit();
    var outcomes: [6]?Puller.Error = @splat(null);
    var threads: [6]std.Thread = undefined;
    for (&threads, &sinks, &outcomes) |*thread, *sink, *outcome| {
        thread.* = try std.Thread.spawn(.{}, Puller_.run, .{ &objects[0].id, addressOf(server), sink, outcome });
    }
    for (threads) |thread| thread.join();
    for (sinks, outcomes) |sink, outcome| {
        try testing.expectEqual(@as(?Puller.Error, null), outcome);
        try testing.expectEqualSlices(u8, objects[0].bytes, sink.bytes);
    }
}

test "a source that dies for good: the pull fails and the object is aborted" {
    const bytes = try patterned(testing.allocator, 2 * wire.chunk_size_max_bytes, 3);
    defer testing.allocator.free(bytes);
    const path = "/tmp/objstore-transfer-test-2.spill";
    const fd: i32 = @intCast(linux.open(path, .{ .ACCMODE = .RDWR, .CREAT = true, .TRUNC = true, .CLOEXEC = true }, 0o600));
    defer _ = linux.close(fd);
    defer _ = linux.unlink(path);
    var broken = [_]Served{.{ .id = idOf(1), .bytes = bytes, .file = .{ .fd = fd, .offset_bytes = 0 } }};
    var source: TestSource = .{ .objects = &broken };
    const server = try startServer(&source, .{});
    defer server.stop();
    var sink: TestSink = .{};
    defer sink.deinit();
    const sources = [_]socket.Address{addressOf(server)};
    const outcome = Puller.pull(&broken[0].id, .{ .sources = &sources, .token = token, .connection_count = 2 }, sink.sink());
    try testing.expectError(error.Closed, outcome);
    try testing.expect(sink.aborted and !sink.sealed);
}
