//! The handshake that opens every connection between nodes: both sides prove they hold the
//! cluster token without sending it (HMAC-SHA256 over fresh nonces from both sides), so a peer
//! without the token learns nothing and gets nothing, and a stolen exchange cannot be replayed.
//!
//!   client → server  Hello      magic, version, client nonce
//!   server → client  Challenge  magic, version, server nonce, HMAC(token, "server" | cn | sn)
//!   client → server  Proof      HMAC(token, "client" | sn | cn)
//!   server → client  Verdict    accepted, or refused (then the server closes)
//!
//! The client checks the server's proof before it proves itself: a server without the token
//! cannot collect proofs to replay elsewhere (they are bound to its own nonce anyway).

const std = @import("std");
const assert = std.debug.assert;
const HmacSha256 = std.crypto.auth.hmac.sha2.HmacSha256;
const socket = @import("socket.zig");

pub const magic: u32 = 0x4658_534f; // "OSXF", little-endian
pub const version: u16 = 1;
pub const nonce_size_bytes = 32;
pub const proof_size_bytes = HmacSha256.mac_length;
pub const token_size_max = 1024;

pub const Error = socket.Error || error{
    /// The peer is not an objstore node of this protocol version.
    NotAPeer,
    /// The server refused our proof: we do not hold the cluster's token.
    TokenRefused,
    /// The server's proof was wrong: it does not hold the cluster's token.
    PeerNotAuthenticated,
};

const Hello = extern struct {
    magic: u32,
    version: u16,
    reserved: u16 = 0,
    client_nonce: [nonce_size_bytes]u8,
};

const Challenge = extern struct {
    magic: u32,
    version: u16,
    reserved: u16 = 0,
    server_nonce: [nonce_size_bytes]u8,
    server_proof: [proof_size_bytes]u8,
};

const Proof = extern struct {
    client_proof: [proof_size_bytes]u8,
};

const Verdict = extern struct {
    accepted: u32,
};

comptime {
    assert(@sizeOf(Hello) == 40);
    assert(@sizeOf(Challenge) == 72);
}

fn proofOf(token: []const u8, role: []const u8, first: []const u8, second: []const u8) [proof_size_bytes]u8 {
    var mac = HmacSha256.init(token);
    mac.update(role);
    mac.update(first);
    mac.update(second);
    var out: [proof_size_bytes]u8 = undefined;
    mac.final(&out);
    return out;
}

/// From the kernel's CSPRNG (getrandom never returns fewer than 256 bytes once it is seeded).
fn freshNonce() [nonce_size_bytes]u8 {
    var nonce: [nonce_size_bytes]u8 = undefined;
    while (true) {
        const rc = std.os.linux.getrandom(&nonce, nonce.len, 0);
        if (std.os.linux.errno(rc) == .INTR) continue;
        assert(rc == nonce.len);
        return nonce;
    }
}

/// The client's half, right after connecting.
pub fn authenticateToServer(fd: i32, token: []const u8) Error!void {
    assert(token.len > 0 and token.len <= token_size_max);
    const client_nonce = freshNonce();
    try socket.sendFrame(fd, &Hello{ .magic = magic, .version = version, .client_nonce = client_nonce });
    const challenge = try socket.receiveFrame(fd, Challenge);
    if (challenge.magic != magic or challenge.version != version) return error.NotAPeer;
    const expected = proofOf(token, "objstore server", &client_nonce, &challenge.server_nonce);
    if (!std.crypto.timing_safe.eql([proof_size_bytes]u8, expected, challenge.server_proof)) {
        return error.PeerNotAuthenticated;
    }
    const proof = proofOf(token, "objstore client", &challenge.server_nonce, &client_nonce);
    try socket.sendFrame(fd, &Proof{ .client_proof = proof });
    const verdict = try socket.receiveFrame(fd, Verdict);
    if (verdict.accepted != 1) return error.TokenRefused;
}

/// The server's half, right after accepting. On error the caller closes the connection
/// without serving anything.
pub fn authenticateClient(fd: i32, token: []const u8) Error!void {
    assert(token.len > 0 and token.len <= token_size_max);
    const hello = try socket.receiveFrame(fd, Hello);
    if (hello.magic != magic or hello.version != version) return error.NotAPeer;
    const server_nonce = freshNonce();
    try socket.sendFrame(fd, &Challenge{
        .magic = magic,
        .version = version,
        .server_nonce = server_nonce,
        .server_proof = proofOf(token, "objstore server", &hello.client_nonce, &server_nonce),
    });
    const proof = try socket.receiveFrame(fd, Proof);
    const expected = proofOf(token, "objstore client", &server_nonce, &hello.client_nonce);
    const accepted = std.crypto.timing_safe.eql([proof_size_bytes]u8, expected, proof.client_proof);
    try socket.sendFrame(fd, &Verdict{ .accepted = @intFromBool(accepted) });
    if (!accepted) return error.TokenRefused;
}

const testing = std.testing;

fn serveOnce(listener: i32, token: []const u8, outcome: *?Error) void {
    const fd = socket.accept(listener) catch |err| {
        outcome.* = err;
        return;
    };
    defer socket.close(fd);
    socket.setTimeout(fd, 2000) catch {};
    authenticateClient(fd, token) catch |err| {
        outcome.* = err;
        return;
    };
    outcome.* = null;
}

fn handshake(server_token: []const u8, client_token: []const u8) !struct { client: ?Error, server: ?Error } {
    const listener = try socket.listen(.{ .ip = .{ 127, 0, 0, 1 }, .port = 0 }, 1);
    defer socket.close(listener);
    const port = try socket.localPort(listener);
    var server_outcome: ?Error = error.System;
    const thread = try std.Thread.spawn(.{}, serveOnce, .{ listener, server_token, &server_outcome });
    const fd = try socket.connect(.{ .ip = .{ 127, 0, 0, 1 }, .port = port }, 2000);
    var client_outcome: ?Error = null;
    authenticateToServer(fd, client_token) catch |err| {
        client_outcome = err;
    };
    socket.close(fd);
    thread.join();
    return .{ .client = client_outcome, .server = server_outcome };
}

test "the same token: both sides accept" {
    const outcome = try handshake("s3cret-token", "s3cret-token");
    try testing.expectEqual(@as(?Error, null), outcome.client);
    try testing.expectEqual(@as(?Error, null), outcome.server);
}

test "a different token: the client finds the server's proof wrong and proves nothing" {
    const outcome = try handshake("the-cluster-token", "a-wrong-token");
    try testing.expectEqual(@as(?Error, error.PeerNotAuthenticated), outcome.client);
    // The server never got a proof: the client hung up first.
    try testing.expectEqual(@as(?Error, error.Closed), outcome.server);
}

test "a client that is not a peer is refused before anything is sent" {
    const listener = try socket.listen(.{ .ip = .{ 127, 0, 0, 1 }, .port = 0 }, 1);
    defer socket.close(listener);
    const port = try socket.localPort(listener);
    var server_outcome: ?Error = null;
    const thread = try std.Thread.spawn(.{}, serveOnce, .{ listener, "token", &server_outcome });
    const fd = try socket.connect(.{ .ip = .{ 127, 0, 0, 1 }, .port = port }, 2000);
    try socket.sendAll(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n" ++ ".............");
    socket.close(fd);
    thread.join();
    try testing.expectEqual(@as(?Error, error.NotAPeer), server_outcome);
}
