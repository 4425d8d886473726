//! The sending side of transfers between nodes: a thread that accepts connections and a thread
//! per connection (at most `connection_count_max`) that authenticates the peer (auth.zig) and
//! serves its requests (wire.zig) from a `Source`, the node's store. An object in memory goes to
//! the socket straight from shared memory; a spilled one through a buffer of one chunk, read
//! from its spill file as it is sent. Nothing is copied whole first.

const std = @import("std");
const linux = std.os.linux;
const assert = std.debug.assert;
const Atomic = std.atomic.Value;
const socket = @import("socket.zig");
const auth = @import("auth.zig");
const wire = @import("wire.zig");
const sys = @import("../sys.zig");

const Server = @This();

/// Where the served objects come from. Implementations are called from several threads.
pub const Source = struct {
    context: *anyopaque,
    /// Pins `id` for reading (waiting up to `wait_ms` for it to be sealed) and says where it is.
    openFn: *const fn (context: *anyopaque, id: *const wire.ObjectId, wait_ms: u32) OpenError!Opened,
    /// Unpins what `openFn` pinned.
    closeFn: *const fn (context: *anyopaque, id: *const wire.ObjectId, opened: Opened) void,
};

pub const OpenError = error{ Absent, NotSealed, Lost, Busy };

pub const Opened = struct {
    size_bytes: u64,
    where: union(enum) {
        memory: [*]const u8,
        /// The object's bytes at `offset_bytes` of the file `fd` (open while pinned).
        file: struct { fd: i32, offset_bytes: u64 },
    },
};

pub const Options = struct {
    connection_count_max: u32 = 32,
    /// A peer silent this long (mid-request or between requests) is disconnected.
    io_timeout_ms: u32 = 30_000,
    chunk_size_bytes: u32 = wire.chunk_size_default_bytes,
    /// Tests only: the chunk with this number (from 1, counted over the server's life) is sent
    /// with one byte flipped, as a flaky network or memory would.
    corrupt_chunk_number: u32 = 0,
};

const SlotState = enum(u8) { free, busy, done };

const listen_backlog = 1024;

/// One connection and the thread serving it. The descriptor is closed only after the thread
/// is joined, so `stop` may shut down any descriptor of a slot that is not free.
const Slot = struct {
    state: Atomic(SlotState) = .init(.free),
    fd: i32 = -1,
    thread: std.Thread = undefined,
};

allocator: std.mem.Allocator,
listener: i32,
port: u16,
token_buffer: [auth.token_size_max]u8,
token_len: u32,
source: Source,
options: Options,
slots: []Slot,
stopping: Atomic(bool) = .init(false),
chunks_sent: Atomic(u32) = .init(0),
accept_thread: std.Thread = undefined,

pub const StartError = socket.Error || error{ OutOfMemory, InvalidArgument };

/// Listens on `address` (port 0: a free port, see `port`) and serves until `stop`.
pub fn start(
    allocator: std.mem.Allocator,
    address: socket.Address,
    token: []const u8,
    source: Source,
    options: Options,
) StartError!*Server {
    if (token.len == 0 or token.len > auth.token_size_max) return error.InvalidArgument;
    if (options.connection_count_max == 0 or options.chunk_size_bytes == 0) return error.InvalidArgument;
    if (options.chunk_size_bytes > wire.chunk_size_max_bytes) return error.InvalidArgument;
    const server = try allocator.create(Server);
    errdefer allocator.destroy(server);
    const slots = try allocator.alloc(Slot, options.connection_count_max);
    errdefer allocator.free(slots);
    for (slots) |*slot| slot.* = .{};
    // Room in the backlog for peers waiting for a connection slot (the kernel caps it at somaxconn).
    const listener = try socket.listen(address, listen_backlog);
    errdefer socket.close(listener);
    server.* = .{
        .allocator = allocator,
        .listener = listener,
        .port = try socket.localPort(listener),
        .token_buffer = undefined,
        .token_len = @intCast(token.len),
        .source = source,
        .options = options,
        .slots = slots,
    };
    @memcpy(server.token_buffer[0..token.len], token);
    server.accept_thread = std.Thread.spawn(.{}, acceptLoop, .{server}) catch return error.System;
    return server;
}

/// Stops accepting, disconnects every peer, joins every thread and frees the server.
pub fn stop(server: *Server) void {
    server.stopping.store(true, .seq_cst);
    // Wakes the accept loop: accept on a shut-down listener fails at once.
    _ = linux.shutdown(server.listener, linux.SHUT.RDWR);
    server.accept_thread.join();
    for (server.slots) |*slot| {
        if (slot.state.load(.acquire) != .free) _ = linux.shutdown(slot.fd, linux.SHUT.RDWR);
    }
    for (server.slots) |*slot| server.reap(slot);
    socket.close(server.listener);
    const allocator = server.allocator;
    allocator.free(server.slots);
    allocator.destroy(server);
}

fn clusterToken(server: *const Server) []const u8 {
    return server.token_buffer[0..server.token_len];
}

/// Joins the thread of a slot that is not free, closes its connection and frees the slot.
fn reap(server: *Server, slot: *Slot) void {
    _ = server;
    if (slot.state.load(.acquire) == .free) return;
    slot.thread.join();
    assert(slot.state.load(.acquire) == .done);
    socket.close(slot.fd);
    slot.fd = -1;
    slot.state.store(.free, .release);
}

/// A free slot, reaping finished connections if none is free; null when all are busy.
/// A free slot once one is, or null once the server stops.
fn waitForFreeSlot(server: *Server) ?*Slot {
    while (!server.stopping.load(.seq_cst)) {
        if (server.freeSlot()) |slot| return slot;
        sys.sleepNs(std.time.ns_per_ms);
    }
    return null;
}

fn freeSlot(server: *Server) ?*Slot {
    for (server.slots) |*slot| {
        if (slot.state.load(.acquire) == .done) server.reap(slot);
        if (slot.state.load(.acquire) == .free) return slot;
    }
    return null;
}

fn acceptLoop(server: *Server) void {
    while (!server.stopping.load(.seq_cst)) {
        // Every connection taken: new peers wait in the listen backlog (their connect has
        // succeeded; their first read is bounded by their I/O timeout) until one ends, rather
        // than being closed on (a pull whose only source closed on it would fail).
        const slot = server.waitForFreeSlot() orelse return;
        const fd = socket.accept(server.listener) catch |err| switch (err) {
            // A shut-down listener (stop) or a transient failure (a peer gone before accept).
            else => if (server.stopping.load(.seq_cst)) return else continue,
        };
        slot.fd = fd;
        slot.state.store(.busy, .release);
        slot.thread = std.Thread.spawn(.{}, serveConnection, .{ server, slot }) catch {
            slot.state.store(.done, .release);
            // Not joinable: mark it free by hand.
            socket.close(fd);
            slot.fd = -1;
            slot.state.store(.free, .release);
            continue;
        };
    }
}

fn serveConnection(server: *Server, slot: *Slot) void {
    defer slot.state.store(.done, .release);
    const fd = slot.fd;
    // The peer learns at once that this connection is over; the descriptor itself is closed
    // when the slot is reaped.
    defer _ = linux.shutdown(fd, linux.SHUT.RDWR);
    socket.setTimeout(fd, server.options.io_timeout_ms) catch return;
    auth.authenticateClient(fd, server.clusterToken()) catch return;
    var buffer: ?[]u8 = null;
    defer if (buffer) |b| server.allocator.free(b);
    while (!server.stopping.load(.acquire)) {
        const request = socket.receiveFrame(fd, wire.Request) catch return;
        server.serveRequest(fd, request, &buffer) catch return;
    }
}

const ServeError = socket.Error || error{OutOfMemory};

fn serveRequest(server: *Server, fd: i32, request: wire.Request, buffer: *?[]u8) ServeError!void {
    const kind = std.enums.fromInt(wire.RequestKind, @intFromEnum(request.kind)) orelse {
        return socket.sendFrame(fd, &wire.Reply{ .status = .bad_request });
    };
    const opened = server.source.openFn(server.source.context, &request.id, request.wait_ms) catch |err| {
        return socket.sendFrame(fd, &wire.Reply{ .status = switch (err) {
            error.Absent => .absent,
            error.NotSealed => .not_sealed,
            error.Lost => .lost,
            error.Busy => .busy,
        } });
    };
    defer server.source.closeFn(server.source.context, &request.id, opened);
    if (kind == .stat) {
        return socket.sendFrame(fd, &wire.Reply{ .status = .ok, .object_size_bytes = opened.size_bytes });
    }
    const in_range = request.offset_bytes <= opened.size_bytes and
        request.length_bytes <= opened.size_bytes - request.offset_bytes;
    if (!in_range) {
        return socket.sendFrame(fd, &wire.Reply{ .status = .bad_request, .object_size_bytes = opened.size_bytes });
    }
    try socket.sendFrame(fd, &wire.Reply{
        .status = .ok,
        .object_size_bytes = opened.size_bytes,
        .length_bytes = request.length_bytes,
    });
    try server.sendRange(fd, opened, request.offset_bytes, request.length_bytes, buffer);
}

/// Sends bytes [offset, offset + length) of an opened object as checksummed chunks.
fn sendRange(server: *Server, fd: i32, opened: Opened, offset_bytes: u64, length_bytes: u64, buffer: *?[]u8) ServeError!void {
    const chunk_size: u64 = server.options.chunk_size_bytes;
    var sent: u64 = 0;
    // Bounded: one turn per chunk of the range.
    while (sent < length_bytes) {
        const size: u32 = @intCast(@min(chunk_size, length_bytes - sent));
        const at = offset_bytes + sent;
        var bytes: []const u8 = switch (opened.where) {
            .memory => |base| base[at .. at + size],
            .file => |file| try server.readChunk(buffer, file.fd, file.offset_bytes + at, size),
        };
        const crc = wire.Crc32c.hash(bytes);
        if (server.shouldCorrupt()) bytes = try corruptedCopy(server, buffer, bytes);
        const header: wire.ChunkHeader = .{ .offset_bytes = at, .length_bytes = size, .crc32c = crc };
        try socket.sendAllPair(fd, std.mem.asBytes(&header), bytes);
        sent += size;
    }
    assert(sent == length_bytes);
}

fn chunkBuffer(server: *Server, buffer: *?[]u8) error{OutOfMemory}![]u8 {
    if (buffer.* == null) buffer.* = try server.allocator.alloc(u8, server.options.chunk_size_bytes);
    return buffer.*.?;
}

fn readChunk(server: *Server, buffer: *?[]u8, file: i32, file_offset_bytes: u64, size: u32) ServeError![]const u8 {
    const chunk = (try server.chunkBuffer(buffer))[0..size];
    var filled: usize = 0;
    while (filled < chunk.len) {
        const rc = linux.pread(file, chunk[filled..].ptr, chunk.len - filled, @intCast(file_offset_bytes + filled));
        if (linux.errno(rc) == .INTR) continue;
        // A spill file that shrank or failed: the peer sees the connection end and tries
        // another copy; this node's own get reports the loss.
        if (linux.errno(rc) != .SUCCESS or rc == 0) return error.Closed;
        filled += rc;
    }
    return chunk;
}

fn shouldCorrupt(server: *Server) bool {
    const number = server.chunks_sent.fetchAdd(1, .monotonic) + 1;
    return server.options.corrupt_chunk_number != 0 and number == server.options.corrupt_chunk_number;
}

fn corruptedCopy(server: *Server, buffer: *?[]u8, bytes: []const u8) error{OutOfMemory}![]const u8 {
    const copy = (try server.chunkBuffer(buffer))[0..bytes.len];
    if (copy.ptr != bytes.ptr) @memcpy(copy, bytes);
    if (copy.len > 0) copy[copy.len / 2] ^= 0x20;
    return copy;
}
