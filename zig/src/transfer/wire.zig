//! The frames of the transfer protocol, after the handshake (auth.zig). All fixed-size,
//! little-endian, sent as the bytes of extern structs.
//!
//!   client → server  Request       stat (size of a sealed object) or read (a byte range of it)
//!   server → client  Reply         status, the object's size, the bytes that follow
//!   server → client  ChunkHeader   offset, length, CRC32C of the bytes; then the bytes  (read)
//!                    …             chunks in order until the range is covered
//!
//! A connection carries any number of requests, one at a time.

const std = @import("std");
const assert = std.debug.assert;

pub const id_size_bytes = 28;
pub const ObjectId = [id_size_bytes]u8;

/// A chunk is the unit checked (and fetched again if its checksum fails). A receiver accepts
/// chunks of any length up to this; the sender picks the length (Server.Options), so senders
/// of either length and receivers of either version interoperate with no version check.
pub const chunk_size_max_bytes: u32 = 4 << 20;

/// What a server sends: small enough that the bytes the sender's checksum just read are still
/// in its L2 cache when the kernel copies them into the socket (a chunk of 4 MiB was read from
/// memory twice), large enough that the per-chunk header and system call do not matter.
pub const chunk_size_default_bytes: u32 = 256 << 10;

/// CRC-32C, with the `crc32` instruction on x86-64-v2 and up (see spill_io.zig).
pub const Crc32c = std.hash.crc.@"CRC-32/ISCSI";

pub const RequestKind = enum(u32) {
    stat = 1,
    read = 2,
};

pub const Request = extern struct {
    kind: RequestKind,
    /// How long the server may wait for the object to be sealed before replying `not_sealed`.
    wait_ms: u32,
    id: ObjectId,
    reserved: u32 = 0,
    offset_bytes: u64 = 0,
    length_bytes: u64 = 0,
};

pub const ReplyStatus = enum(u32) {
    ok = 0,
    /// The server's store has no such object.
    absent = 1,
    /// The object exists but was not sealed within `wait_ms`.
    not_sealed = 2,
    /// The object's only copy there is unreadable (a missing or corrupt spill file).
    lost = 3,
    /// The server has no connection or memory to spare; try another copy or later.
    busy = 4,
    /// The range lies outside the object, or the request is malformed.
    bad_request = 5,
    _,
};

pub const Reply = extern struct {
    status: ReplyStatus,
    reserved: u32 = 0,
    object_size_bytes: u64 = 0,
    /// Bytes that follow in chunks (read only).
    length_bytes: u64 = 0,
};

pub const ChunkHeader = extern struct {
    offset_bytes: u64,
    length_bytes: u32,
    crc32c: u32,
};

comptime {
    assert(chunk_size_default_bytes > 0 and chunk_size_default_bytes <= chunk_size_max_bytes);
    assert(@sizeOf(Request) == 56);
    assert(@sizeOf(Reply) == 24);
    assert(@sizeOf(ChunkHeader) == 16);
}
