//! The receiving side of transfers: pulls one object from the nodes that hold it into a `Sink`
//! (an object created in the local store), over several connections at once for a large one.
//! The kernel writes each chunk straight into the object; its CRC32C is checked while it is
//! still in cache, and a chunk that fails is fetched again. A connection that dies hands its
//! part to the next source. The object is sealed only once every byte has been checked, and
//! aborted otherwise: a pull never leaves wrong bytes behind.

const std = @import("std");
const assert = std.debug.assert;
const socket = @import("socket.zig");
const auth = @import("auth.zig");
const wire = @import("wire.zig");

/// Where a pulled object is written. Called from several threads (`create` and `seal` once).
pub const Sink = struct {
    context: *anyopaque,
    /// Creates the object; returns the memory its bytes go to.
    createFn: *const fn (context: *anyopaque, id: *const wire.ObjectId, size_bytes: u64) CreateError![]u8,
    sealFn: *const fn (context: *anyopaque, id: *const wire.ObjectId) void,
    abortFn: *const fn (context: *anyopaque, id: *const wire.ObjectId) void,
};

pub const CreateError = error{
    /// Someone on this node is creating (pulling) it already: wait for its seal instead.
    Exists,
    /// No room in the local store.
    StoreFull,
};

pub const connection_count_max = 16;
pub const source_count_max = 16;
/// Parts smaller than this are not worth a connection of their own.
const part_size_min_bytes: u64 = 8 << 20;
const chunk_attempts_max = 3;

pub const Options = struct {
    /// The nodes holding a copy, tried in order when one fails.
    sources: []const socket.Address,
    token: []const u8,
    connection_count: u32 = 4,
    /// Bounds a connect: a source that does not answer (a host cut off or gone, whose SYNs go
    /// unanswered) is passed over this soon. The kernel answers a connect even for a busy server.
    connect_timeout_ms: u32 = 3_000,
    /// Bounds every send and receive: a silent peer fails the pull, never hangs it.
    io_timeout_ms: u32 = 10_000,
    /// How long the source may wait for the object to be sealed before answering.
    wait_ms: u32 = 0,
    /// Where the object's size goes once a source told it (also when the pull then fails: a
    /// full store's caller makes that much room and pulls again).
    size_out: ?*u64 = null,
};

pub const Error = auth.Error || CreateError || error{
    /// No source has the object.
    Absent,
    /// The object is not sealed yet at its source.
    NotSealed,
    /// Every source failed, or the copies are unreadable; the last failure is in `Outcome`.
    Unavailable,
    /// A chunk failed its checksum on every attempt.
    Corrupt,
    /// A source answered outside the protocol.
    ProtocolViolation,
    InvalidArgument,
};

/// Pulls `id` into `sink`; returns its size. On error nothing is left in the sink.
pub fn pull(id: *const wire.ObjectId, options: Options, sink: Sink) Error!u64 {
    if (options.sources.len == 0 or options.sources.len > source_count_max) return error.InvalidArgument;
    if (options.token.len == 0 or options.token.len > auth.token_size_max) return error.InvalidArgument;
    if (options.connection_count == 0 or options.connection_count > connection_count_max) return error.InvalidArgument;

    const first, const size_bytes = try openHolder(id, options);
    defer socket.close(first.fd);
    if (options.size_out) |out| out.* = size_bytes;
    const dest = try sink.createFn(sink.context, id, size_bytes);
    assert(dest.len == size_bytes);
    pullParts(id, options, dest, first) catch |err| {
        sink.abortFn(sink.context, id);
        return err;
    };
    sink.sealFn(sink.context, id);
    return size_bytes;
}

const Connection = struct {
    fd: i32,
    source_index: usize,
};

/// A connection to the first source that holds `id`, and its size. A source that lacks it
/// (a copy the directory still lists was deleted) or cannot serve it now is passed over.
fn openHolder(id: *const wire.ObjectId, options: Options) Error!struct { Connection, u64 } {
    var last_error: Error = error.Absent;
    var start: usize = 0;
    while (start < options.sources.len) {
        const connection = try openAny(options, start);
        const size_bytes = stat(connection.fd, id, options.wait_ms) catch |err| {
            socket.close(connection.fd);
            if (err != error.Absent and err != error.Unavailable) return err;
            last_error = err;
            // openAny may have skipped dead sources: go on after the one that answered.
            if (connection.source_index < start) break;
            start = connection.source_index + 1;
            continue;
        };
        return .{ connection, size_bytes };
    }
    return last_error;
}

/// A connection to the first source from `start` on that answers and authenticates.
fn openAny(options: Options, start: usize) Error!Connection {
    var last_error: Error = error.Unavailable;
    for (0..options.sources.len) |attempt| {
        const source_index = (start + attempt) % options.sources.len;
        const fd = socket.connect(options.sources[source_index], options.connect_timeout_ms) catch |err| {
            last_error = err;
            continue;
        };
        socket.setTimeout(fd, options.io_timeout_ms) catch |err| {
            socket.close(fd);
            last_error = err;
            continue;
        };
        auth.authenticateToServer(fd, options.token) catch |err| {
            socket.close(fd);
            // A token problem is the same at every source: say so instead of trying on.
            if (err == error.TokenRefused or err == error.PeerNotAuthenticated) return err;
            last_error = err;
            continue;
        };
        return .{ .fd = fd, .source_index = source_index };
    }
    return last_error;
}

fn stat(fd: i32, id: *const wire.ObjectId, wait_ms: u32) Error!u64 {
    try socket.sendFrame(fd, &wire.Request{ .kind = .stat, .wait_ms = wait_ms, .id = id.* });
    const reply = try socket.receiveFrame(fd, wire.Reply);
    try checkReply(reply);
    return reply.object_size_bytes;
}

fn checkReply(reply: wire.Reply) Error!void {
    return switch (reply.status) {
        .ok => {},
        .absent => error.Absent,
        .not_sealed => error.NotSealed,
        .lost, .busy => error.Unavailable,
        .bad_request => error.ProtocolViolation,
        _ => error.ProtocolViolation,
    };
}

/// How many parts a pull of `size_bytes` is cut into.
fn partCount(size_bytes: u64, connection_count: u32) u32 {
    const worth = @max(1, size_bytes / part_size_min_bytes);
    return @intCast(@min(connection_count, worth));
}

const Part = struct {
    index: u32,
    id: *const wire.ObjectId,
    options: Options,
    dest: []u8,
    offset_bytes: u64,
    length_bytes: u64,
    /// The first part reuses the connection that asked for the size.
    connection: ?Connection,
    outcome: ?Error = null,
};

fn pullParts(id: *const wire.ObjectId, options: Options, dest: []u8, first: Connection) Error!void {
    const count = partCount(dest.len, options.connection_count);
    assert(count >= 1 and count <= connection_count_max);
    var parts: [connection_count_max]Part = undefined;
    var threads: [connection_count_max]?std.Thread = @splat(null);
    for (0..count) |i| {
        const start = dest.len * i / count;
        const end = dest.len * (i + 1) / count;
        parts[i] = .{
            .index = @intCast(i),
            .id = id,
            .options = options,
            .dest = dest,
            .offset_bytes = start,
            .length_bytes = end - start,
            .connection = if (i == 0) first else null,
        };
    }
    for (1..count) |i| {
        threads[i] = std.Thread.spawn(.{}, runPart, .{&parts[i]}) catch null;
        // No thread to spare: the part runs here, after the first.
    }
    runPart(&parts[0]);
    for (1..count) |i| {
        if (threads[i]) |thread| thread.join() else runPart(&parts[i]);
    }
    for (parts[0..count]) |part| if (part.outcome) |err| return err;
}

fn runPart(part: *Part) void {
    part.outcome = pullPart(part);
}

/// Fetches one part, moving to the next source when a connection fails.
fn pullPart(part: *Part) ?Error {
    const options = part.options;
    // Parts are spread over the sources by their number (copies share the sending).
    var start_source: usize = if (part.connection) |c| c.source_index else part.index % options.sources.len;
    var last_error: Error = error.Unavailable;
    for (0..options.sources.len) |attempt| {
        // The first part's first attempt uses the connection `pull` opened (and closes).
        const borrowed = attempt == 0 and part.connection != null;
        const connection = if (borrowed) part.connection.? else (openAny(options, start_source) catch |err| return err);
        const outcome = readRange(connection.fd, part.id, part.dest, part.offset_bytes, part.length_bytes);
        if (!borrowed) socket.close(connection.fd);
        outcome catch |err| switch (err) {
            // The peer went away or stalled, or lacks the object (parts are spread over the
            // sources, and a copy the directory lists may be gone): the next source takes over
            // the whole part.
            error.Closed, error.TimedOut, error.Unavailable, error.Absent, error.NotSealed => {
                last_error = err;
                start_source = connection.source_index + 1;
                continue;
            },
            else => return err,
        };
        return null;
    }
    return last_error;
}

/// Reads [offset, offset + length) into `dest` over `fd`, checking every chunk and fetching
/// those that fail again (each at most `chunk_attempts_max` times).
fn readRange(fd: i32, id: *const wire.ObjectId, dest: []u8, offset_bytes: u64, length_bytes: u64) Error!void {
    if (length_bytes == 0) return;
    var bad: BadChunks = .{};
    try readChunks(fd, id, dest, offset_bytes, length_bytes, &bad);
    for (1..chunk_attempts_max) |_| {
        if (bad.count == 0) return;
        var retry = bad;
        bad = .{};
        for (retry.chunks[0..retry.count]) |chunk| {
            try readChunks(fd, id, dest, chunk.offset_bytes, chunk.length_bytes, &bad);
        }
    }
    if (bad.count != 0) return error.Corrupt;
}

const BadChunks = struct {
    const capacity = 64;
    chunks: [capacity]struct { offset_bytes: u64, length_bytes: u64 } = undefined,
    count: u32 = 0,

    fn add(bad: *BadChunks, offset_bytes: u64, length_bytes: u64) Error!void {
        // More failures than this in one pass: the link is too bad to go on.
        if (bad.count == capacity) return error.Corrupt;
        bad.chunks[bad.count] = .{ .offset_bytes = offset_bytes, .length_bytes = length_bytes };
        bad.count += 1;
    }
};

fn readChunks(fd: i32, id: *const wire.ObjectId, dest: []u8, offset_bytes: u64, length_bytes: u64, bad: *BadChunks) Error!void {
    assert(offset_bytes + length_bytes <= dest.len);
    try socket.sendFrame(fd, &wire.Request{ .kind = .read, .wait_ms = 0, .id = id.*, .offset_bytes = offset_bytes, .length_bytes = length_bytes });
    const reply = try socket.receiveFrame(fd, wire.Reply);
    try checkReply(reply);
    if (reply.object_size_bytes != dest.len or reply.length_bytes != length_bytes) return error.ProtocolViolation;
    var received: u64 = 0;
    // Bounded: every chunk advances `received` by at least one byte.
    while (received < length_bytes) {
        const header = try socket.receiveFrame(fd, wire.ChunkHeader);
        const expected_at = offset_bytes + received;
        const fits = header.length_bytes > 0 and header.length_bytes <= wire.chunk_size_max_bytes and
            header.length_bytes <= length_bytes - received;
        if (header.offset_bytes != expected_at or !fits) return error.ProtocolViolation;
        const target = dest[expected_at .. expected_at + header.length_bytes];
        try socket.receiveExact(fd, target);
        if (wire.Crc32c.hash(target) != header.crc32c) try bad.add(expected_at, header.length_bytes);
        received += header.length_bytes;
    }
}
