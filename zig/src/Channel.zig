//! A message channel between two processes (a driver and one of its workers): two
//! single-producer single-consumer byte rings in a shared file `/dev/shm/<name>` (0600).
//! Ring 0 carries driver → worker, ring 1 worker → driver. Sending and receiving are memory
//! copies and atomic stores, no system call: a receiver that spins picks a message up within
//! a microsecond, where a pipe costs a write, a wake-up and a read (tens of µs on a VM).
//!
//! A side that stops looking at its inbound ring *parks*; a sender that finds the receiver
//! parked un-parks it (once) and tells its caller to ring the receiver's doorbell (a byte on a
//! pipe, which the receiver's event loop watches). A sender that finds the ring full writes
//! what fits and marks itself blocked; the receiver that makes room tells its caller to ring
//! the sender's doorbell. Both hand-offs are Dekker pairs of seq_cst operations, so a message
//! is never left unnoticed in a ring whose receiver sleeps.
//!
//! Framing is the caller's: the rings carry a byte stream.

const std = @import("std");
const assert = std.debug.assert;
const linux = std.os.linux;

const sys = @import("sys.zig");
const status = @import("status.zig");
const shm_names = @import("shm_names.zig");

const Channel = @This();

pub const magic: u64 = 0x6c6e_6e61_6863_736f; // "oschannl"
pub const version: u32 = 1;
pub const capacity_min_bytes: u32 = 4096;
pub const capacity_max_bytes: u32 = 1 << 28;
const header_size_bytes: usize = 4096;
/// NAME_MAX of tmpfs: a 200-byte store name plus the channel prefix and suffix fits.
const name_max_bytes: usize = 255;

/// Which process calls: its outbound ring is `rings[side]`, its inbound one the other.
pub const Side = enum(u1) {
    driver = 0,
    worker = 1,

    fn peer(side: Side) Side {
        return if (side == .driver) .worker else .driver;
    }
};

/// One ring's control words, each written by one process, on cache lines of their own.
const RingControl = extern struct {
    /// Bytes ever written; only the producer stores it.
    head: std.atomic.Value(u64) align(64),
    /// Bytes ever read; only the consumer stores it.
    tail: std.atomic.Value(u64) align(64),
    /// 1 while the consumer does not look at the ring: a producer takes it to 0 and wakes it.
    consumer_parked: std.atomic.Value(u32) align(64),
    /// 1 while the producer waits for room: the consumer takes it to 0 and wakes it.
    producer_blocked: std.atomic.Value(u32) align(64),
};

const Header = extern struct {
    magic: u64,
    version: u32,
    capacity_bytes: u32,
    rings: [2]RingControl align(64),
};

comptime {
    assert(@sizeOf(Header) <= header_size_bytes);
}

base: [*]align(4096) u8,
capacity_bytes: u32,

pub const Error = status.Error;

fn validCapacity(capacity_bytes: u32) bool {
    return capacity_bytes >= capacity_min_bytes and capacity_bytes <= capacity_max_bytes and
        std.math.isPowerOfTwo(capacity_bytes);
}

fn mappedSize(capacity_bytes: u32) usize {
    return header_size_bytes + 2 * @as(usize, capacity_bytes);
}

fn header(self: Channel) *Header {
    return @ptrCast(self.base);
}

fn data(self: Channel, ring: Side) [*]u8 {
    return self.base + header_size_bytes + @as(usize, @intFromEnum(ring)) * self.capacity_bytes;
}

/// Channel files are `/dev/shm/objstore-ch-<name chars>`: a caller cannot reach (create,
/// map or unlink) any other file, such as a store's segment, through the channel calls.
const name_prefix = shm_names.shm_prefix ++ shm_names.channel_prefix;

fn pathOf(buffer: *[shm_names.shm_dir.len + name_max_bytes + 1]u8, name: []const u8) Error![:0]const u8 {
    if (name.len <= name_prefix.len or name.len > name_max_bytes or !std.mem.startsWith(u8, name, name_prefix) or
        !shm_names.fileNameChars(name))
    {
        status.setDetail("a channel name must be '{s}' and then up to {d} letters, digits, '-', '_' or '.', got '{s}'", .{ name_prefix, name_max_bytes - name_prefix.len, name });
        return error.InvalidArgument;
    }
    return std.mem.printSentinel(buffer, shm_names.shm_dir ++ "{s}", .{name}, 0) catch unreachable;
}

/// Creates the channel file (it must not exist) and maps it; the creator is the driver.
pub fn create(name: []const u8, capacity_bytes: u32) Error!Channel {
    if (!validCapacity(capacity_bytes)) {
        status.setDetail("a channel's capacity must be a power of two in {d}..{d} bytes, got {d}", .{ capacity_min_bytes, capacity_max_bytes, capacity_bytes });
        return error.InvalidArgument;
    }
    var path_buffer: [shm_names.shm_dir.len + name_max_bytes + 1]u8 = undefined;
    const path = try pathOf(&path_buffer, name);
    const fd = sys.open(path, .{ .ACCMODE = .RDWR, .CREAT = true, .EXCL = true, .CLOEXEC = true }, 0o600) catch |err| {
        status.setDetail("cannot create channel {s}: {s}", .{ path, @errorName(err) });
        return if (err == error.Exists) error.Exists else error.System;
    };
    defer sys.close(fd);
    errdefer sys.unlink(path) catch {};
    const size_bytes = mappedSize(capacity_bytes);
    sys.ftruncate(fd, size_bytes) catch |err| {
        status.setDetail("cannot size channel {s} to {d} bytes: {s}", .{ path, size_bytes, @errorName(err) });
        return error.System;
    };
    const base = sys.mapShared(fd, size_bytes) catch return error.System;
    const self = Channel{ .base = base, .capacity_bytes = capacity_bytes };
    // The file is new and zero-filled: counters and flags start at 0 (nobody parked).
    self.header().magic = magic;
    self.header().version = version;
    self.header().capacity_bytes = capacity_bytes;
    return self;
}

/// Maps a channel another process created; the opener is the worker.
pub fn open(name: []const u8) Error!Channel {
    var path_buffer: [shm_names.shm_dir.len + name_max_bytes + 1]u8 = undefined;
    const path = try pathOf(&path_buffer, name);
    const fd = sys.open(path, .{ .ACCMODE = .RDWR, .CLOEXEC = true }, 0) catch |err| {
        status.setDetail("cannot open channel {s}: {s}", .{ path, @errorName(err) });
        return if (err == error.NotFound) error.Absent else error.System;
    };
    defer sys.close(fd);
    const size_bytes = sys.fileSize(fd) catch return error.System;
    if (size_bytes < header_size_bytes) return badChannel(path);
    const base = sys.mapShared(fd, @intCast(size_bytes)) catch return error.System;
    const h: *const Header = @ptrCast(base);
    if (h.magic != magic or h.version != version or !validCapacity(h.capacity_bytes) or
        mappedSize(h.capacity_bytes) != size_bytes)
    {
        sys.unmap(base, @intCast(size_bytes));
        return badChannel(path);
    }
    return .{ .base = base, .capacity_bytes = h.capacity_bytes };
}

fn badChannel(path: []const u8) Error {
    status.setDetail("{s} is not an objstore channel of this version", .{path});
    return error.BadStore;
}

pub fn unlink(name: []const u8) Error!void {
    var path_buffer: [shm_names.shm_dir.len + name_max_bytes + 1]u8 = undefined;
    sys.unlink(try pathOf(&path_buffer, name)) catch |err| switch (err) {
        error.NotFound => {},
        else => return error.System,
    };
}

/// The doorbell byte (see lib/tasks/protocol.ts DOORBELL).
pub const doorbell_byte: u8 = 0x01;

/// Writes the doorbell byte to `fd` (a pipe the peer's event loop watches), now, whatever the
/// caller's runtime does with its own streams. A full pipe drops it: the peer reads that pipe
/// soon, and looks at the channel on any read.
pub fn ringDoorbell(fd: i32) Error!void {
    const byte = [1]u8{doorbell_byte};
    while (true) {
        const rc = linux.write(fd, &byte, 1);
        switch (linux.errno(rc)) {
            .SUCCESS => return,
            .INTR => continue,
            .AGAIN => return,
            else => {
                status.setDetail("cannot ring the doorbell on fd {d}: {s}", .{ fd, @tagName(linux.errno(rc)) });
                return error.System;
            },
        }
    }
}

pub fn close(self: Channel) void {
    sys.unmap(self.base, mappedSize(self.capacity_bytes));
}

pub const Sent = struct {
    written_bytes: u32,
    /// The receiver was parked: ring its doorbell.
    wake_receiver: bool,
    /// Not everything fit: wait for this side's doorbell, then send the rest.
    blocked: bool,
};

/// Writes as much of `bytes` as fits into this side's outbound ring.
pub fn send(self: Channel, side: Side, bytes: []const u8) Sent {
    const control = &self.header().rings[@intFromEnum(side)];
    var written_bytes: u32 = 0;
    var blocked = false;
    // A turn after the first runs only because the receiver freed room, so it writes at least
    // one byte: at most bytes.len + 1 turns.
    var turns: usize = 0;
    while (written_bytes < bytes.len) : (turns += 1) {
        assert(turns <= bytes.len);
        const tail = control.tail.load(.seq_cst);
        const fitted = self.write(side, bytes[written_bytes..], tail);
        written_bytes += fitted;
        if (written_bytes == bytes.len) break;
        // Full. Ask to be woken, then look again: the receiver may have drained meanwhile.
        control.producer_blocked.store(1, .seq_cst);
        if (control.tail.load(.seq_cst) == tail) {
            blocked = true;
            break;
        }
        _ = control.producer_blocked.swap(0, .seq_cst);
    }
    assert(written_bytes <= bytes.len);
    const wake_receiver = written_bytes > 0 and
        control.consumer_parked.load(.seq_cst) == 1 and
        control.consumer_parked.cmpxchgStrong(1, 0, .seq_cst, .seq_cst) == null;
    return .{ .written_bytes = written_bytes, .wake_receiver = wake_receiver, .blocked = blocked };
}

/// Copies what fits of `bytes` at the head, then publishes it; returns the bytes written.
fn write(self: Channel, ring_side: Side, bytes: []const u8, tail: u64) u32 {
    const control = &self.header().rings[@intFromEnum(ring_side)];
    const head = control.head.load(.monotonic);
    assert(head >= tail and head - tail <= self.capacity_bytes);
    const free_bytes: u64 = self.capacity_bytes - (head - tail);
    const count: u32 = @intCast(@min(free_bytes, bytes.len));
    if (count == 0) return 0;
    const ring = self.data(ring_side);
    const start: u32 = @intCast(head & (self.capacity_bytes - 1));
    const first: u32 = @min(count, self.capacity_bytes - start);
    @memcpy(ring[start..][0..first], bytes[0..first]);
    @memcpy(ring[0 .. count - first], bytes[first..count]);
    control.head.store(head + count, .seq_cst);
    return count;
}

pub const Received = struct {
    read_bytes: u32,
    /// The sender was blocked on a full ring and now has room: ring its doorbell.
    wake_sender: bool,
};

/// Copies what is in this side's inbound ring into `out` (up to its length), spinning up to
/// `spin_ns` for something to arrive if the ring is empty.
pub fn receive(self: Channel, side: Side, out: []u8, spin_ns: u64) Received {
    const inbound = side.peer();
    const control = &self.header().rings[@intFromEnum(inbound)];
    const tail = control.tail.load(.monotonic);
    var head = control.head.load(.acquire);
    if (head == tail and spin_ns > 0) {
        const deadline_ns = sys.nowNs() + spin_ns;
        while (head == tail and sys.nowNs() < deadline_ns) {
            std.atomic.spinLoopHint();
            head = control.head.load(.acquire);
        }
    }
    assert(head >= tail and head - tail <= self.capacity_bytes);
    const count: u32 = @intCast(@min(head - tail, out.len));
    if (count == 0) return .{ .read_bytes = 0, .wake_sender = false };
    const ring = self.data(inbound);
    const start: u32 = @intCast(tail & (self.capacity_bytes - 1));
    const first: u32 = @min(count, self.capacity_bytes - start);
    @memcpy(out[0..first], ring[start..][0..first]);
    @memcpy(out[first..count], ring[0 .. count - first]);
    control.tail.store(tail + count, .seq_cst);
    const wake_sender = control.producer_blocked.load(.seq_cst) == 1 and
        control.producer_blocked.cmpxchgStrong(1, 0, .seq_cst, .seq_cst) == null;
    return .{ .read_bytes = count, .wake_sender = wake_sender };
}

/// Stops looking at the inbound ring: from now on a sender rings the doorbell. Returns false
/// (and stays awake) if something is waiting there already: receive it first.
pub fn park(self: Channel, side: Side) bool {
    const control = &self.header().rings[@intFromEnum(side.peer())];
    control.consumer_parked.store(1, .seq_cst);
    if (control.head.load(.seq_cst) == control.tail.load(.monotonic)) return true;
    // Undo, unless a sender already took the flag (its doorbell is on its way: harmless).
    _ = control.consumer_parked.cmpxchgStrong(1, 0, .seq_cst, .seq_cst);
    return false;
}

/// Looks at the inbound ring again (a spinning receive follows): senders need not ring.
pub fn listen(self: Channel, side: Side) void {
    const control = &self.header().rings[@intFromEnum(side.peer())];
    control.consumer_parked.store(0, .seq_cst);
}

// Tests -------------------------------------------------------------------------------------

const testing = std.testing;

/// A fresh 4 KiB channel for one test; `deinit` removes it.
const TestChannel = struct {
    name_buffer: [80]u8 = undefined,
    name_size_bytes: usize = 0,
    channel: Channel = undefined,

    fn init(self: *TestChannel, what: []const u8) !void {
        const written = std.fmt.bufPrint(&self.name_buffer, "objstore-ch-test-{s}-{d}", .{ what, sys.getpid() }) catch unreachable;
        self.name_size_bytes = written.len;
        self.channel = try create(written, capacity_min_bytes);
    }

    fn name(self: *const TestChannel) []const u8 {
        return self.name_buffer[0..self.name_size_bytes];
    }

    fn deinit(self: *TestChannel) void {
        unlink(self.name()) catch {};
        self.channel.close();
    }
};

test "a message wraps around the ring and comes back whole" {
    var fixture = TestChannel{};
    try fixture.init("wrap");
    defer fixture.deinit();
    const driver = fixture.channel;
    const worker = try open(fixture.name());
    defer worker.close();

    var message: [3000]u8 = undefined;
    var out: [capacity_min_bytes]u8 = undefined;
    for (0..10) |round| {
        for (&message, 0..) |*byte, i| byte.* = @truncate(i * 7 + round);
        const sent = driver.send(.driver, &message);
        try testing.expectEqual(@as(u32, message.len), sent.written_bytes);
        try testing.expect(!sent.blocked);
        const received = worker.receive(.worker, &out, 0);
        try testing.expectEqual(@as(u32, message.len), received.read_bytes);
        try testing.expectEqualSlices(u8, &message, out[0..received.read_bytes]);
    }
    // Nothing crossed into the other direction.
    try testing.expectEqual(@as(u32, 0), driver.receive(.driver, &out, 0).read_bytes);
}

test "a full ring takes what fits and wakes the blocked sender once drained" {
    var fixture = TestChannel{};
    try fixture.init("full");
    defer fixture.deinit();
    const worker_side = fixture.channel;

    var message: [capacity_min_bytes + 100]u8 = @splat(0xab);
    const sent = worker_side.send(.worker, &message);
    try testing.expectEqual(capacity_min_bytes, sent.written_bytes);
    try testing.expect(sent.blocked);

    var out: [1000]u8 = undefined;
    const first = worker_side.receive(.driver, &out, 0);
    try testing.expectEqual(@as(u32, 1000), first.read_bytes);
    try testing.expect(first.wake_sender);
    // Woken once: a second drain does not ring again.
    try testing.expect(!worker_side.receive(.driver, &out, 0).wake_sender);

    const rest = worker_side.send(.worker, message[capacity_min_bytes..]);
    try testing.expectEqual(@as(u32, 100), rest.written_bytes);
    try testing.expect(!rest.blocked);
}

test "a parked receiver is woken by the first send only, and refuses to park over data" {
    var fixture = TestChannel{};
    try fixture.init("park");
    defer fixture.deinit();
    const channel = fixture.channel;

    // Nobody parked yet: no doorbell.
    try testing.expect(!channel.send(.driver, "a").wake_receiver);
    try testing.expect(!channel.park(.worker)); // "a" is waiting
    var out: [16]u8 = undefined;
    try testing.expectEqual(@as(u32, 1), channel.receive(.worker, &out, 0).read_bytes);
    try testing.expect(channel.park(.worker));
    try testing.expect(channel.send(.driver, "b").wake_receiver);
    try testing.expect(!channel.send(.driver, "c").wake_receiver);
    try testing.expectEqual(@as(u32, 2), channel.receive(.worker, &out, 0).read_bytes);
    channel.listen(.worker);
    try testing.expect(!channel.send(.driver, "d").wake_receiver);
}

test "a doorbell is one byte on the pipe" {
    var fds: [2]i32 = undefined;
    try testing.expectEqual(linux.E.SUCCESS, linux.errno(linux.pipe2(&fds, .{ .CLOEXEC = true })));
    defer _ = linux.close(fds[0]);
    defer _ = linux.close(fds[1]);
    try ringDoorbell(fds[1]);
    var got: [4]u8 = undefined;
    try testing.expectEqual(@as(usize, 1), linux.read(fds[0], &got, got.len));
    try testing.expectEqual(doorbell_byte, got[0]);
    try testing.expectError(error.System, ringDoorbell(fds[0])); // the read end
}

test "bad names and capacities are refused with a reason" {
    try testing.expectError(error.InvalidArgument, create("a/b", capacity_min_bytes));
    try testing.expectError(error.InvalidArgument, create("objstore-ch-x", 5000));
    try testing.expectError(error.Absent, open("objstore-ch-test-never-made"));
    // Only channel files: not a store's segment, not "..", nothing outside /dev/shm.
    const refused = [_][]const u8{ "", ".", "..", "objstore-ch-", "objstore-ch-a/../../x", "objstore-ch-a\x00b", "objstore-mystore", "other-app", "objstore-ch-\xc3\xa9" };
    for (refused) |name| {
        try testing.expectError(error.InvalidArgument, create(name, capacity_min_bytes));
        try testing.expectError(error.InvalidArgument, open(name));
        try testing.expectError(error.InvalidArgument, unlink(name));
    }
    var long_name: [name_max_bytes + 1]u8 = @splat('a');
    @memcpy(long_name[0..name_prefix.len], name_prefix);
    try testing.expectError(error.InvalidArgument, create(&long_name, capacity_min_bytes));
}

/// The forked reader of the cross-process test: sums every byte it receives, checks the
/// sequence, and answers with the sum. Exit code 0 if every byte was in order.
fn echoChild(name: []const u8, total_bytes: u64) noreturn {
    const channel = open(name) catch linux.exit_group(2);
    var out: [1500]u8 = undefined;
    var received_bytes: u64 = 0;
    var sum: u64 = 0;
    while (received_bytes < total_bytes) {
        const got = channel.receive(.worker, &out, 1000 * std.time.ns_per_us);
        for (out[0..got.read_bytes]) |byte| {
            if (byte != expectedByte(received_bytes)) linux.exit_group(3);
            sum +%= byte;
            received_bytes += 1;
        }
    }
    const answer = std.mem.asBytes(&sum);
    var sent_bytes: usize = 0;
    while (sent_bytes < answer.len) sent_bytes += channel.send(.worker, answer[sent_bytes..]).written_bytes;
    linux.exit_group(0);
}

fn expectedByte(position: u64) u8 {
    return @truncate(position *% 2654435761 >> 7);
}

test "two processes stream 8 MiB through a 4 KiB ring in uneven pieces, every byte in order" {
    var fixture = TestChannel{};
    try fixture.init("stream");
    defer fixture.deinit();
    const channel = fixture.channel;
    const total_bytes: u64 = 8 << 20;

    const rc = try sys.fork();
    if (rc == 0) echoChild(fixture.name(), total_bytes);

    var piece: [5000]u8 = undefined;
    var position: u64 = 0;
    var expected_sum: u64 = 0;
    var piece_size: usize = 1;
    while (position < total_bytes) {
        piece_size = (piece_size * 31 + 17) % piece.len + 1;
        const count: usize = @intCast(@min(piece_size, total_bytes - position));
        for (piece[0..count], 0..) |*byte, i| byte.* = expectedByte(position + i);
        var sent_bytes: usize = 0;
        while (sent_bytes < count) {
            const sent = channel.send(.driver, piece[sent_bytes..count]);
            sent_bytes += sent.written_bytes;
            if (sent.blocked) std.atomic.spinLoopHint();
        }
        for (piece[0..count]) |byte| expected_sum +%= byte;
        position += count;
    }
    var answer: [8]u8 = undefined;
    var got_bytes: usize = 0;
    while (got_bytes < answer.len) got_bytes += channel.receive(.driver, answer[got_bytes..], 1000 * std.time.ns_per_us).read_bytes;
    var wait_status: i32 = 0;
    _ = linux.waitpid(@intCast(rc), &wait_status, 0);
    try testing.expectEqual(@as(i32, 0), wait_status);
    try testing.expectEqual(expected_sum, std.mem.bytesToValue(u64, &answer));
}
