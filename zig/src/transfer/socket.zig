//! TCP over IPv4 for the transfer of objects between nodes: the few socket calls it needs, as
//! Zig errors, with every blocking call bounded by a timeout (a dead peer must not hang a pull).

const std = @import("std");
const linux = std.os.linux;
const assert = std.debug.assert;

pub const Error = error{
    /// The peer closed the connection or reset it.
    Closed,
    /// No progress within the socket's timeout.
    TimedOut,
    /// Nothing listens at the address.
    Refused,
    /// The address is taken (listen) or cannot be reached (connect).
    AddressUnavailable,
    System,
};

/// An IPv4 address and port, in host order.
pub const Address = struct {
    ip: [4]u8,
    port: u16,

    pub fn sockaddr(self: Address) linux.sockaddr.in {
        return .{ .port = std.mem.nativeToBig(u16, self.port), .addr = @bitCast(self.ip) };
    }

    /// Parses dotted-quad IPv4 text ("198.18.0.2"); null if it is not one.
    pub fn parseIp(text: []const u8, port: u16) ?Address {
        var ip: [4]u8 = undefined;
        var parts = std.mem.splitScalar(u8, text, '.');
        for (&ip) |*octet| {
            const part = parts.next() orelse return null;
            if (part.len == 0 or part.len > 3) return null;
            octet.* = std.fmt.parseInt(u8, part, 10) catch return null;
        }
        if (parts.next() != null) return null;
        return .{ .ip = ip, .port = port };
    }
};

fn check(rc: usize) Error!usize {
    return switch (linux.errno(rc)) {
        .SUCCESS => rc,
        .PIPE, .CONNRESET, .NOTCONN => error.Closed,
        .AGAIN, .TIMEDOUT, .INPROGRESS => error.TimedOut,
        .CONNREFUSED => error.Refused,
        .ADDRINUSE, .ADDRNOTAVAIL, .NETUNREACH, .HOSTUNREACH => error.AddressUnavailable,
        else => error.System,
    };
}

pub fn close(fd: i32) void {
    assert(fd >= 0);
    _ = linux.close(fd);
}

fn newSocket() Error!i32 {
    const rc = try check(linux.socket(linux.AF.INET, linux.SOCK.STREAM | linux.SOCK.CLOEXEC, linux.IPPROTO.TCP));
    return @intCast(rc);
}

fn setOption(fd: i32, level: i32, name: u32, value: []const u8) Error!void {
    _ = try check(linux.setsockopt(fd, level, name, value.ptr, @intCast(value.len)));
}

/// Bounds every send and receive on `fd`: no progress for `timeout_ms` fails with TimedOut.
pub fn setTimeout(fd: i32, timeout_ms: u32) Error!void {
    assert(timeout_ms > 0);
    const tv = linux.timeval{ .sec = @intCast(timeout_ms / 1000), .usec = @intCast((timeout_ms % 1000) * 1000) };
    const bytes = std.mem.asBytes(&tv);
    try setOption(fd, linux.SOL.SOCKET, linux.SO.RCVTIMEO, bytes);
    try setOption(fd, linux.SOL.SOCKET, linux.SO.SNDTIMEO, bytes);
}

/// A listening socket on `address` (port 0: any free port; see `localPort`).
pub fn listen(address: Address, backlog: u32) Error!i32 {
    const fd = try newSocket();
    errdefer close(fd);
    const one: c_int = 1;
    try setOption(fd, linux.SOL.SOCKET, linux.SO.REUSEADDR, std.mem.asBytes(&one));
    const sa = address.sockaddr();
    _ = try check(linux.bind(fd, @ptrCast(&sa), @sizeOf(linux.sockaddr.in)));
    _ = try check(linux.listen(fd, backlog));
    return fd;
}

/// The port a listening socket is bound to.
pub fn localPort(fd: i32) Error!u16 {
    var sa: linux.sockaddr.in = undefined;
    var len: linux.socklen_t = @sizeOf(linux.sockaddr.in);
    _ = try check(linux.getsockname(fd, @ptrCast(&sa), &len));
    return std.mem.bigToNative(u16, sa.port);
}

/// The next connection, with TCP_NODELAY set (requests are small and wait for replies).
pub fn accept(listener: i32) Error!i32 {
    while (true) {
        const rc = linux.accept4(listener, null, null, linux.SOCK.CLOEXEC);
        if (linux.errno(rc) == .INTR) continue;
        const fd: i32 = @intCast(try check(rc));
        errdefer close(fd);
        try setNoDelay(fd);
        return fd;
    }
}

/// A connection to `address`, every call on it bounded by `timeout_ms`.
pub fn connect(address: Address, timeout_ms: u32) Error!i32 {
    const fd = try newSocket();
    errdefer close(fd);
    // SO_SNDTIMEO also bounds a blocking connect.
    try setTimeout(fd, timeout_ms);
    const sa = address.sockaddr();
    while (true) {
        const rc = linux.connect(fd, @ptrCast(&sa), @sizeOf(linux.sockaddr.in));
        if (linux.errno(rc) == .INTR) continue;
        _ = try check(rc);
        break;
    }
    try setNoDelay(fd);
    return fd;
}

fn setNoDelay(fd: i32) Error!void {
    const one: c_int = 1;
    try setOption(fd, linux.IPPROTO.TCP, linux.TCP.NODELAY, std.mem.asBytes(&one));
}

/// Sends all of `bytes` (straight from wherever they are: shared memory needs no copy).
pub fn sendAll(fd: i32, bytes: []const u8) Error!void {
    var sent: usize = 0;
    while (sent < bytes.len) {
        // One call moves at most what the kernel takes; a signal may cut it short.
        const rc = linux.sendto(fd, bytes[sent..].ptr, bytes.len - sent, linux.MSG.NOSIGNAL, null, 0);
        if (linux.errno(rc) == .INTR) continue;
        const n = try check(rc);
        assert(n > 0 and n <= bytes.len - sent);
        sent += n;
    }
}

/// Sends all of `first`, then all of `second`, in one call (sendmsg) while the kernel takes
/// both: a chunk's header and its bytes cost one system call, and with TCP_NODELAY the header
/// does not leave as a segment of its own.
pub fn sendAllPair(fd: i32, first: []const u8, second: []const u8) Error!void {
    const total = first.len + second.len;
    var sent: usize = 0;
    // Bounded: every turn sends at least one byte.
    while (sent < total) {
        var iov: [2]std.posix.iovec_const = undefined;
        var iov_count: usize = 0;
        if (sent < first.len) {
            iov[iov_count] = .{ .base = first[sent..].ptr, .len = first.len - sent };
            iov_count += 1;
        }
        const second_sent = sent -| first.len;
        if (second_sent < second.len) {
            iov[iov_count] = .{ .base = second[second_sent..].ptr, .len = second.len - second_sent };
            iov_count += 1;
        }
        assert(iov_count > 0);
        const message: linux.msghdr_const = .{
            .name = null,
            .namelen = 0,
            .iov = &iov,
            .iovlen = iov_count,
            .control = null,
            .controllen = 0,
            .flags = 0,
        };
        const rc = linux.sendmsg(fd, &message, linux.MSG.NOSIGNAL);
        if (linux.errno(rc) == .INTR) continue;
        const n = try check(rc);
        assert(n > 0 and n <= total - sent);
        sent += n;
    }
    assert(sent == total);
}

/// Fills all of `buffer` from the socket (the kernel writes straight into it).
pub fn receiveExact(fd: i32, buffer: []u8) Error!void {
    var received: usize = 0;
    while (received < buffer.len) {
        const rc = linux.recvfrom(fd, buffer[received..].ptr, buffer.len - received, 0, null, null);
        if (linux.errno(rc) == .INTR) continue;
        const n = try check(rc);
        if (n == 0) return error.Closed;
        assert(n <= buffer.len - received);
        received += n;
    }
}

/// Sends a fixed-size frame (an extern struct) as its bytes.
pub fn sendFrame(fd: i32, frame: anytype) Error!void {
    try sendAll(fd, std.mem.asBytes(frame));
}

/// Receives a fixed-size frame of type `Frame`.
pub fn receiveFrame(fd: i32, comptime Frame: type) Error!Frame {
    var frame: Frame = undefined;
    try receiveExact(fd, std.mem.asBytes(&frame));
    return frame;
}

test "Address.parseIp" {
    const a = Address.parseIp("198.18.0.2", 7000).?;
    try std.testing.expectEqualSlices(u8, &.{ 198, 18, 0, 2 }, &a.ip);
    try std.testing.expect(Address.parseIp("198.18.0", 1) == null);
    try std.testing.expect(Address.parseIp("198.18.0.2.1", 1) == null);
    try std.testing.expect(Address.parseIp("256.0.0.1", 1) == null);
    try std.testing.expect(Address.parseIp("a.b.c.d", 1) == null);
    try std.testing.expect(Address.parseIp("", 1) == null);
}

test "a listener on port 0 gets a port; a connection moves bytes both ways" {
    const listener = try listen(.{ .ip = .{ 127, 0, 0, 1 }, .port = 0 }, 4);
    defer close(listener);
    const port = try localPort(listener);
    try std.testing.expect(port != 0);
    const client = try connect(.{ .ip = .{ 127, 0, 0, 1 }, .port = port }, 2000);
    var client_open = true;
    defer if (client_open) close(client);
    const server = try accept(listener);
    defer close(server);
    try setTimeout(server, 2000);
    try sendAll(client, "ping");
    var buffer: [4]u8 = undefined;
    try receiveExact(server, &buffer);
    try std.testing.expectEqualStrings("ping", &buffer);
    close(client);
    client_open = false;
    try std.testing.expectError(error.Closed, receiveExact(server, &buffer));
}

test "sendAllPair: both parts arrive in order, also when the second is larger than the socket buffer" {
    const listener = try listen(.{ .ip = .{ 127, 0, 0, 1 }, .port = 0 }, 4);
    defer close(listener);
    const client = try connect(.{ .ip = .{ 127, 0, 0, 1 }, .port = try localPort(listener) }, 2000);
    defer close(client);
    const server = try accept(listener);
    defer close(server);
    try setTimeout(server, 2000);
    const Sender = struct {
        fn run(fd: i32, first: []const u8, second: []const u8, outcome: *?Error) void {
            sendAllPair(fd, first, second) catch |err| {
                outcome.* = err;
            };
        }
    };
    const second = try std.testing.allocator.alloc(u8, 8 << 20);
    defer std.testing.allocator.free(second);
    for (second, 0..) |*byte, i| byte.* = @truncate(i *% 7);
    const received = try std.testing.allocator.alloc(u8, 4 + second.len);
    defer std.testing.allocator.free(received);
    // Partial sends: the kernel takes several MiB at most per call, so the sender resumes
    // within the second part (and, for the empty second part, sends the first alone).
    for ([_][]const u8{ second, second[0..0] }) |part| {
        var outcome: ?Error = null;
        const sender = try std.Thread.spawn(.{}, Sender.run, .{ client, "head", part, &outcome });
        try receiveExact(server, received[0 .. 4 + part.len]);
        sender.join();
        try std.testing.expectEqual(@as(?Error, null), outcome);
        try std.testing.expectEqualStrings("head", received[0..4]);
        try std.testing.expectEqualSlices(u8, part, received[4 .. 4 + part.len]);
    }
}
