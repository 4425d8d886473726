//! Spill files: object payloads written to a file as self-describing records, read back verified.
//!
//! File layout: a sequence of records, each `RecordHeader` (64 bytes) + data + zero padding,
//! so that every header starts on a 64-byte boundary. The file carries no index: the caller keeps
//! (path, file_offset, id, size) for every record it spilled, and `readRecord` checks all of them.
//!
//! Linux only: writes go through io_uring when the kernel allows it, else `pwritev`.
//! A `Writer` is not thread-safe (an io_uring ring belongs to one thread); use one per thread.

const std = @import("std");
const builtin = @import("builtin");
const linux = std.os.linux;
const assert = std.debug.assert;
const iovec_const = std.posix.iovec_const;

/// CRC-32C (Castagnoli). The std picks the SSE4.2 `crc32` instruction version only when the
/// *compile target* has the `crc32` feature (x86_64_v2 and up); on baseline x86_64 it is a table.
const Crc32c = std.hash.crc.@"CRC-32/ISCSI";
const Progress = @import("Progress.zig");

pub const Backend = enum(u8) { io_uring = 1, pwritev = 2 };

pub const record_header_size_bytes = 64;
pub const record_alignment_bytes = 64;
/// "OSPL" when the header is read as little-endian bytes.
pub const record_magic: u32 = 0x4c50534f;
pub const record_version: u16 = 1;

/// Field order differs from a naive listing on purpose: `crc32c` sits before `data_size_bytes`
/// so the u64 is naturally aligned without a hidden 4-byte hole. No implicit padding means no
/// uninitialised bytes reach the disk, and every one of the 64 bytes is checked by `readRecord`
/// (flags and reserved must be zero).
pub const RecordHeader = extern struct {
    magic: u32,
    version: u16,
    flags: u16,
    id: [28]u8,
    crc32c: u32,
    data_size_bytes: u64,
    reserved: [16]u8,
};

comptime {
    assert(@sizeOf(RecordHeader) == record_header_size_bytes);
    assert(@offsetOf(RecordHeader, "id") == 8);
    assert(@offsetOf(RecordHeader, "crc32c") == 36);
    assert(@offsetOf(RecordHeader, "data_size_bytes") == 40);
    assert(@offsetOf(RecordHeader, "reserved") == 48);
    assert(record_alignment_bytes >= record_header_size_bytes);
    // File offsets and sizes are u64 and slices are usize: keep them interchangeable.
    assert(@sizeOf(usize) == @sizeOf(u64));
}

pub const Record = struct {
    id: [28]u8,
    data: []const u8,
    /// Out: where this record's header landed in the file (a multiple of 64).
    file_offset: u64 = 0,
};

pub const Error = error{
    /// Header or data does not match what the caller expects (magic, version, id, size, CRC).
    Corrupt,
    /// The file, or the part of it that should hold the record, does not exist.
    Missing,
    /// `writeFile` never overwrites: the path already exists.
    Exists,
    NoSpace,
    PermissionDenied,
    InputOutput,
    System,
};

/// The kernel's MAX_RW_COUNT: a single read or write moves at most this many bytes.
pub const io_size_max_bytes: u32 = 0x7ffff000;

/// One io_uring slot per record in flight; the ring has at least as many SQ entries, so an SQE is
/// always available for a slot (see `uringQueueSlot`).
const ring_entries: u16 = 64;
const slot_count: u8 = 64;
/// readRecord reads and checksums in pieces this size (well under MAX_RW_COUNT). Large reads
/// widen the kernel's readahead: 16 MiB restored 64 MiB objects ~7 % faster than 1 MiB (cold
/// cache, 2 runs each); the checksum then reads the chunk back from L3/memory, which costs less.
const read_chunk_size_bytes: u64 = 1 << 24;
/// Bounds for loops that can spin without making progress (EINTR, EAGAIN, empty completions).
const retries_max: u32 = 1024;
/// user_data of the fdatasync SQE; write SQEs use their slot index.
const user_data_fsync: u64 = std.math.maxInt(u64);

const zeros: [record_alignment_bytes]u8 = @splat(0);

comptime {
    assert(slot_count <= ring_entries);
    assert(std.math.isPowerOfTwo(ring_entries));
}

/// A record being written through io_uring. Everything the kernel reads (header, iovecs) lives
/// here, so it must stay put until the completion arrives.
const Slot = struct {
    header: RecordHeader,
    data: []const u8,
    offset_bytes: u64,
    done_bytes: u64,
    iovecs: [3]iovec_const,
};

/// State of one `uringWriteRecords` call.
const UringBatch = struct {
    fd: linux.fd_t,
    records: []Record,
    progress: *Progress,
    done_bytes: u64 = 0,
    record_next: usize = 0,
    offset_bytes: u64 = 0,
    in_flight: u32 = 0,
    /// First failure seen; once set nothing new is queued, and in-flight ops are only drained.
    failure: ?UringError = null,
};

const UringError = Error || error{UringUnsupported};

pub const Writer = struct {
    backend: Backend,
    /// Valid only while `backend == .io_uring`.
    ring: linux.IoUring,
    slots: [slot_count]Slot,
    slots_free: [slot_count]u8,
    slots_free_count: u8,
    /// Largest single write. Tests lower it to force split and follow-up writes.
    /// Large writes into the page cache were erratic on the measurement VM (16 MiB writes:
    /// 0.4-1.9 GB/s); 1 MiB writes held a steady 1.4-1.5 GB/s (bench/README.md).
    write_size_max_bytes: u32 = 1 << 20,
    /// Tests only: the next write (either backend) fails with this errno instead of running.
    inject_write_errno: linux.E = .SUCCESS,

    /// Probes io_uring; any failure to set up a ring (ENOSYS, EPERM from seccomp or
    /// io_uring_disabled, ENOMEM from memlock limits, ...) selects pwritev instead.
    pub fn init(force_pwritev: bool) Writer {
        var writer: Writer = .{
            .backend = .pwritev,
            .ring = undefined,
            .slots = undefined,
            .slots_free = undefined,
            .slots_free_count = slot_count,
        };
        for (&writer.slots_free, 0..) |*slot_free, index| slot_free.* = @intCast(index);
        if (force_pwritev) return writer;

        var ring = linux.IoUring.init(ring_entries, 0) catch return writer;
        if (ring.sq.sqes.len < slot_count) {
            ring.deinit();
            return writer;
        }
        writer.ring = ring;
        writer.backend = .io_uring;
        return writer;
    }

    pub fn deinit(self: *Writer) void {
        assert(self.slots_free_count == slot_count);
        if (self.backend == .io_uring) self.ring.deinit();
        self.backend = .pwritev;
    }

    /// Creates `path` (O_CREAT|O_EXCL, mode 0600), writes each record as header + data + padding,
    /// sets `records[i].file_offset`, fdatasyncs and closes. Returns the file size in bytes.
    /// On any error after the file was created, it is unlinked. An existing path is never
    /// touched (error.Exists). The caller's data must not change during the call.
    pub fn writeFile(self: *Writer, path: [*:0]const u8, records: []Record) Error!u64 {
        assert(self.slots_free_count == slot_count);
        const fd = try openExclusive(path);
        const size_bytes = self.writeRecords(fd, path, records) catch |err| {
            _ = linux.close(fd);
            _ = linux.unlink(path);
            return err;
        };
        // close() after fdatasync can still report a deferred error (NFS, EIO): do not keep a
        // file whose data may be incomplete. EINTR from close must not be retried on Linux.
        switch (linux.errno(linux.close(fd))) {
            .SUCCESS, .INTR => {},
            else => |errno| {
                _ = linux.unlink(path);
                return errorFromErrno(errno);
            },
        }
        assert(self.slots_free_count == slot_count);
        return size_bytes;
    }

    fn writeRecords(self: *Writer, fd: linux.fd_t, path: [*:0]const u8, records: []Record) Error!u64 {
        var total_bytes: u64 = 0;
        for (records) |record| total_bytes += regionSizeBytes(record.data.len);
        var progress = Progress.init("spilling to", path, total_bytes);
        defer progress.done();
        if (self.backend == .io_uring) {
            if (self.uringWriteRecords(fd, records, &progress)) |size_bytes| {
                return size_bytes;
            } else |err| switch (err) {
                // The kernel rejected an opcode: use pwritev for this file and from now on.
                // Rewriting from the start is correct: every write is positioned, so ops that
                // did complete are simply repeated with the same bytes.
                error.UringUnsupported => if (self.backend == .io_uring) self.fallBackToPwritev(),
                else => |e| return e,
            }
        }
        assert(self.backend == .pwritev);
        var offset_bytes: u64 = 0;
        for (records) |*record| {
            const header = headerFor(record.id, record.data);
            try self.pwriteRegion(fd, &header, record.data, offset_bytes);
            record.file_offset = offset_bytes;
            offset_bytes += regionSizeBytes(record.data.len);
            progress.update(offset_bytes);
        }
        try fdatasyncRetrying(fd);
        return offset_bytes;
    }

    fn fallBackToPwritev(self: *Writer) void {
        assert(self.backend == .io_uring);
        assert(self.slots_free_count == slot_count);
        self.ring.deinit();
        self.backend = .pwritev;
    }

    /// Writes header + data + padding at `offset_bytes`, continuing after short writes.
    fn pwriteRegion(
        self: *Writer,
        fd: linux.fd_t,
        header: *const RecordHeader,
        data: []const u8,
        offset_bytes: u64,
    ) Error!void {
        assert(offset_bytes % record_alignment_bytes == 0);
        const region_size_bytes = regionSizeBytes(data.len);
        var done_bytes: u64 = 0;
        var retries: u32 = 0;
        // Bounded: every pass writes at least one byte or spends one of `retries_max`.
        while (done_bytes < region_size_bytes) {
            var iovecs: [3]iovec_const = undefined;
            const iovec_count =
                regionIovecs(header, data, done_bytes, self.write_size_max_bytes, &iovecs);
            const injected = self.takeInjectedErrno();
            const rc = if (injected != .SUCCESS) errnoAsResult(injected) else linux.pwritev(
                fd,
                &iovecs,
                iovec_count,
                @intCast(offset_bytes + done_bytes),
            );
            switch (linux.errno(rc)) {
                .SUCCESS => {
                    if (rc == 0) return error.System; // A regular file never accepts 0 bytes.
                    done_bytes += rc;
                },
                .INTR, .AGAIN => {
                    retries += 1;
                    if (retries > retries_max) return error.System;
                },
                else => |errno| return errorFromErrno(errno),
            }
        }
        assert(done_bytes == region_size_bytes);
    }

    fn takeInjectedErrno(self: *Writer) linux.E {
        if (!builtin.is_test) return .SUCCESS;
        const errno = self.inject_write_errno;
        self.inject_write_errno = .SUCCESS;
        return errno;
    }

    // ---- io_uring ----

    /// Keeps up to `slot_count` records in flight, then fdatasyncs once all writes completed.
    /// Never returns while an op is in flight: the kernel reads the slots and the caller's data.
    fn uringWriteRecords(self: *Writer, fd: linux.fd_t, records: []Record, progress: *Progress) UringError!u64 {
        assert(self.backend == .io_uring);
        var batch: UringBatch = .{ .fd = fd, .records = records, .progress = progress };
        var stalls: u32 = 0;
        while (true) {
            while (batch.failure == null and batch.record_next < records.len and
                self.slots_free_count > 0)
            {
                self.uringQueueRecord(&batch);
            }
            if (batch.in_flight == 0) break;
            const completed = self.uringReap(&batch);
            if (completed == 0) {
                stalls += 1;
                if (stalls > retries_max) {
                    // The ring stopped working with ops in flight. Closing the ring makes the
                    // kernel cancel them; any that still run write the same bytes to the same
                    // offsets, so a pwritev rewrite (UringUnsupported) or unlink stays correct.
                    self.abandonRing(&batch);
                    return batch.failure orelse error.System;
                }
            }
        }
        assert(self.slots_free_count == slot_count);
        if (batch.failure) |failure| return failure;
        assert(batch.record_next == records.len);
        try self.uringFdatasync(fd);
        return batch.offset_bytes;
    }

    fn uringQueueRecord(self: *Writer, batch: *UringBatch) void {
        assert(self.slots_free_count > 0);
        assert(batch.record_next < batch.records.len);
        const record = &batch.records[batch.record_next];
        self.slots_free_count -= 1;
        const slot_index = self.slots_free[self.slots_free_count];
        // The CRC is computed here, on the caller's thread, while earlier records are in flight.
        self.slots[slot_index] = .{
            .header = headerFor(record.id, record.data),
            .data = record.data,
            .offset_bytes = batch.offset_bytes,
            .done_bytes = 0,
            .iovecs = undefined,
        };
        record.file_offset = batch.offset_bytes;
        batch.offset_bytes += regionSizeBytes(record.data.len);
        batch.record_next += 1;
        batch.in_flight += 1;
        self.uringQueueSlot(batch.fd, slot_index);
    }

    /// Queues one writev for the not yet written part of a slot's region.
    fn uringQueueSlot(self: *Writer, fd: linux.fd_t, slot_index: u8) void {
        const slot = &self.slots[slot_index];
        assert(slot.done_bytes < regionSizeBytes(slot.data.len));
        const iovec_count = regionIovecs(
            &slot.header,
            slot.data,
            slot.done_bytes,
            self.write_size_max_bytes,
            &slot.iovecs,
        );
        // Cannot fail: each slot owns at most one SQE and the SQ has >= slot_count entries.
        _ = self.ring.writev(
            slot_index,
            fd,
            slot.iovecs[0..iovec_count],
            slot.offset_bytes + slot.done_bytes,
        ) catch unreachable;
    }

    /// Submits queued SQEs, waits for at least one completion, handles all that are ready.
    /// Returns how many completions were handled (0 after a transient enter error).
    fn uringReap(self: *Writer, batch: *UringBatch) u32 {
        assert(batch.in_flight > 0);
        _ = self.ring.submit_and_wait(1) catch |err| switch (err) {
            // Transient: retry; completions may already be waiting (EBUSY means exactly that).
            error.SignalInterrupt, error.SystemResources, error.CompletionQueueOvercommitted => {},
            error.OpcodeNotSupported, error.SubmissionQueueEntryInvalid => {
                if (batch.failure == null) batch.failure = error.UringUnsupported;
            },
            else => if (batch.failure == null) {
                batch.failure = error.System;
            },
        };
        var cqes: [slot_count]linux.io_uring_cqe = undefined;
        const count = self.ring.copy_cqes(&cqes, 0) catch 0;
        for (cqes[0..count]) |cqe| self.uringComplete(batch, cqe);
        return count;
    }

    fn uringComplete(self: *Writer, batch: *UringBatch, cqe: linux.io_uring_cqe) void {
        assert(cqe.user_data < slot_count);
        const slot_index: u8 = @intCast(cqe.user_data);
        const slot = &self.slots[slot_index];
        const region_size_bytes = regionSizeBytes(slot.data.len);
        const injected = self.takeInjectedErrno();
        const errno = if (injected != .SUCCESS) injected else cqe.err();
        switch (errno) {
            .SUCCESS => if (cqe.res == 0) {
                if (batch.failure == null) batch.failure = error.System; // No progress.
            } else {
                slot.done_bytes += @intCast(cqe.res);
                assert(slot.done_bytes <= region_size_bytes);
                batch.done_bytes += @intCast(cqe.res);
                batch.progress.update(batch.done_bytes);
            },
            .INTR, .AGAIN => {},
            // Old kernels or odd filesystems: the op itself is not supported.
            .INVAL, .OPNOTSUPP => if (batch.failure == null) {
                batch.failure = error.UringUnsupported;
            },
            else => if (batch.failure == null) {
                batch.failure = errorFromErrno(errno);
            },
        }
        const unfinished = slot.done_bytes < region_size_bytes;
        if (unfinished and batch.failure == null) {
            // Short write, split write or EINTR: continue with a follow-up SQE for the rest.
            self.uringQueueSlot(batch.fd, slot_index);
        } else {
            self.slots_free[self.slots_free_count] = slot_index;
            self.slots_free_count += 1;
            batch.in_flight -= 1;
        }
    }

    /// Tears the ring down while ops may be in flight; only when the ring no longer completes.
    fn abandonRing(self: *Writer, batch: *UringBatch) void {
        assert(batch.in_flight > 0);
        self.ring.deinit();
        self.backend = .pwritev;
        for (&self.slots_free, 0..) |*slot_free, index| slot_free.* = @intCast(index);
        self.slots_free_count = slot_count;
        batch.in_flight = 0;
    }

    /// Queued only after every write completed: SQEs run concurrently, so an fsync queued
    /// beside the writes could finish before them.
    fn uringFdatasync(self: *Writer, fd: linux.fd_t) UringError!void {
        for (0..retries_max) |_| {
            const sqe = self.ring.fsync(user_data_fsync, fd, linux.IORING_FSYNC_DATASYNC) catch
                unreachable; // The SQ is empty: all writes have completed.
            _ = sqe;
            const cqe = self.uringWaitOne() catch {
                // The ring no longer completes; the fsync SQE may still be queued in it, so
                // the ring cannot be reused for the next file.
                self.fallBackToPwritev();
                return fdatasyncRetrying(fd);
            };
            assert(cqe.user_data == user_data_fsync);
            switch (cqe.err()) {
                .SUCCESS => return,
                .INTR, .AGAIN => continue,
                .INVAL, .OPNOTSUPP => return fdatasyncRetrying(fd),
                else => |errno| return errorFromErrno(errno),
            }
        }
        return error.System;
    }

    /// Submits and waits for exactly one completion, retrying transient enter errors.
    fn uringWaitOne(self: *Writer) error{System}!linux.io_uring_cqe {
        var cqes: [1]linux.io_uring_cqe = undefined;
        for (0..retries_max) |_| {
            _ = self.ring.submit_and_wait(1) catch |err| switch (err) {
                error.SignalInterrupt, error.SystemResources => {},
                error.CompletionQueueOvercommitted => {},
                else => return error.System,
            };
            const count = self.ring.copy_cqes(&cqes, 0) catch 0;
            if (count == 1) return cqes[0];
        }
        return error.System;
    }
};

/// Reads the record at `file_offset` of `path` into `dest`, whose length must equal the stored
/// size. error.Corrupt: magic, version, flags, reserved, id, size or CRC32C mismatch, or an offset
/// that is not 64-byte aligned. error.Missing: no such file, or the file ends before the record.
/// On error, `dest` may hold partial data.
pub fn readRecord(path: [*:0]const u8, file_offset: u64, id: [28]u8, dest: []u8) Error!void {
    // The offset comes from an index in shared memory that another process may have scribbled
    // on: a bad value is data, not a programming error, so report it instead of asserting.
    if (file_offset % record_alignment_bytes != 0) return error.Corrupt;
    const file_offset_max: u64 = std.math.maxInt(i64) / 2;
    if (file_offset > file_offset_max or dest.len > file_offset_max) return error.Missing;

    const fd = try openReadOnly(path);
    defer _ = linux.close(fd);

    var header: RecordHeader = undefined;
    try preadExact(fd, std.mem.asBytes(&header), file_offset, null, null);
    try checkHeader(&header, id, dest.len);
    const data_offset = file_offset + record_header_size_bytes;
    if (dest.len >= parallel_read_min_bytes) {
        try preadParallel(fd, dest, data_offset);
        if (Crc32c.hash(dest) != header.crc32c) return error.Corrupt;
        return;
    }
    var crc: Crc32c = .init();
    var progress = Progress.init("restoring from", path, dest.len);
    defer progress.done();
    try preadExact(fd, dest, data_offset, &crc, &progress);
    if (crc.final() != header.crc32c) return error.Corrupt;
}

/// Records at least this large are read by `parallel_readers` threads at once. Measured on 64
/// MiB objects, 3 GiB through 512 MiB, cold cache, alternating runs: a get with every ref held
/// (restores into a full store) went from 0.52–0.58 GB/s with one reader to 1.00–1.02 with two
/// and 1.09–1.32 with four; get + free each went from 1.15–1.28 to 1.03–1.08 (two) and 0.84–0.95
/// (four). Why one reader is slow into a full store is not understood (its CPU time triples,
/// in the kernel's copy to user memory); two readers is the compromise.
const parallel_read_min_bytes: u64 = 32 << 20;
const parallel_readers = 2;

/// Fills `dest` from `offset_bytes` with `parallel_readers` concurrent preads of adjacent parts
/// (this thread reads the first); every thread is joined before it returns.
fn preadParallel(fd: linux.fd_t, dest: []u8, offset_bytes: u64) Error!void {
    assert(dest.len >= parallel_read_min_bytes);
    const part_bytes = std.mem.alignForward(u64, dest.len / parallel_readers, 4096);
    var results: [parallel_readers]Error!void = @splat({});
    var threads: [parallel_readers]?std.Thread = @splat(null);
    for (1..parallel_readers) |i| {
        const start = @min(i * part_bytes, dest.len);
        const end = if (i == parallel_readers - 1) dest.len else @min(start + part_bytes, dest.len);
        if (start == end) continue;
        const part = dest[start..end];
        // No thread (out of memory, limits): read that part here instead.
        threads[i] = std.Thread.spawn(.{}, readPart, .{ fd, part, offset_bytes + start, &results[i] }) catch null;
        if (threads[i] == null) results[i] = preadExact(fd, part, offset_bytes + start, null, null);
    }
    results[0] = preadExact(fd, dest[0..@min(part_bytes, dest.len)], offset_bytes, null, null);
    for (threads) |thread| if (thread) |t| t.join();
    for (results) |result| try result;
}

fn readPart(fd: linux.fd_t, part: []u8, offset_bytes: u64, result: *Error!void) void {
    result.* = preadExact(fd, part, offset_bytes, null, null);
}

/// Checks a record read from elsewhere (a byte range of a remote copy) as readRecord checks
/// one in a file, and copies its data into `dest`. `region` starts at the record's header.
pub fn verifyRecord(region: []const u8, id: [28]u8, dest: []u8) Error!void {
    if (region.len < record_header_size_bytes + dest.len) return error.Corrupt;
    var header: RecordHeader = undefined;
    @memcpy(std.mem.asBytes(&header), region[0..record_header_size_bytes]);
    try checkHeader(&header, id, dest.len);
    const data = region[record_header_size_bytes..][0..dest.len];
    if (Crc32c.hash(data) != header.crc32c) return error.Corrupt;
    @memcpy(dest, data);
}

fn checkHeader(header: *const RecordHeader, id: [28]u8, size_bytes: u64) Error!void {
    if (header.magic != record_magic) return error.Corrupt;
    if (header.version != record_version) return error.Corrupt;
    if (header.flags != 0) return error.Corrupt;
    if (!std.mem.allEqual(u8, &header.reserved, 0)) return error.Corrupt;
    if (!std.mem.eql(u8, &header.id, &id)) return error.Corrupt;
    if (header.data_size_bytes != size_bytes) return error.Corrupt;
}

fn headerFor(id: [28]u8, data: []const u8) RecordHeader {
    return .{
        .magic = record_magic,
        .version = record_version,
        .flags = 0,
        .id = id,
        .crc32c = Crc32c.hash(data),
        .data_size_bytes = data.len,
        .reserved = @splat(0),
    };
}

/// Header + data + zero padding up to the next 64-byte boundary.
pub fn regionSizeBytes(data_size_bytes: u64) u64 {
    const size_bytes = std.mem.alignForward(
        u64,
        record_header_size_bytes + data_size_bytes,
        record_alignment_bytes,
    );
    assert(size_bytes % record_alignment_bytes == 0);
    assert(size_bytes - data_size_bytes >= record_header_size_bytes);
    return size_bytes;
}

/// Fills `iovecs` with the region (header, data, padding) minus its first `skip_bytes`, capped
/// at `size_max_bytes` in total. Returns how many iovecs are used (1..3).
fn regionIovecs(
    header: *const RecordHeader,
    data: []const u8,
    skip_bytes: u64,
    size_max_bytes: u64,
    iovecs: *[3]iovec_const,
) u32 {
    const region_size_bytes = regionSizeBytes(data.len);
    assert(skip_bytes < region_size_bytes);
    assert(size_max_bytes > 0);
    const padding_size_bytes = region_size_bytes - record_header_size_bytes - data.len;
    const segments = [3][]const u8{ std.mem.asBytes(header), data, zeros[0..padding_size_bytes] };
    var skip_left_bytes = skip_bytes;
    var budget_bytes = size_max_bytes;
    var count: u32 = 0;
    for (segments) |segment| {
        if (skip_left_bytes >= segment.len) {
            skip_left_bytes -= segment.len; // Also drops empty segments (no data, no padding).
            continue;
        }
        if (budget_bytes == 0) break;
        const part_size_bytes = @min(segment.len - skip_left_bytes, budget_bytes);
        const part = segment[skip_left_bytes..][0..part_size_bytes];
        skip_left_bytes = 0;
        budget_bytes -= part.len;
        iovecs[count] = .{ .base = part.ptr, .len = part.len };
        count += 1;
    }
    assert(count >= 1 and count <= 3);
    return count;
}

fn openExclusive(path: [*:0]const u8) Error!linux.fd_t {
    const flags: linux.O = .{ .ACCMODE = .WRONLY, .CREAT = true, .EXCL = true, .CLOEXEC = true };
    return openRetrying(path, flags, 0o600);
}

fn openReadOnly(path: [*:0]const u8) Error!linux.fd_t {
    const flags: linux.O = .{ .ACCMODE = .RDONLY, .CLOEXEC = true };
    return openRetrying(path, flags, 0);
}

fn openRetrying(path: [*:0]const u8, flags: linux.O, mode: linux.mode_t) Error!linux.fd_t {
    for (0..retries_max) |_| {
        const rc = linux.open(path, flags, mode);
        switch (linux.errno(rc)) {
            .SUCCESS => {
                const fd: linux.fd_t = @intCast(rc);
                assert(fd >= 0);
                return fd;
            },
            .INTR => continue,
            else => |errno| return errorFromErrno(errno),
        }
    }
    return error.System;
}

/// Fills `dest` from `offset_bytes`; end of file before `dest` is full means error.Missing.
/// With `crc`, checksums each chunk right after reading it, while it is still in the CPU cache
/// (hot 256 MiB read: 4.3 GB/s chunked vs 4.0 GB/s read-then-checksum, on a busy 2-vCPU VM).
fn preadExact(fd: linux.fd_t, dest: []u8, offset_bytes: u64, crc: ?*Crc32c, progress: ?*Progress) Error!void {
    var done_bytes: u64 = 0;
    var retries: u32 = 0;
    // Bounded: every pass reads at least one byte, returns, or spends one of `retries_max`.
    while (done_bytes < dest.len) {
        const chunk = dest[done_bytes..][0..@min(dest.len - done_bytes, read_chunk_size_bytes)];
        const rc = linux.pread(fd, chunk.ptr, chunk.len, @intCast(offset_bytes + done_bytes));
        switch (linux.errno(rc)) {
            .SUCCESS => {
                if (rc == 0) return error.Missing;
                assert(rc <= chunk.len);
                if (crc) |c| c.update(chunk[0..rc]);
                done_bytes += rc;
                if (progress) |p| p.update(done_bytes);
            },
            .INTR, .AGAIN => {
                retries += 1;
                if (retries > retries_max) return error.System;
            },
            else => |errno| return errorFromErrno(errno),
        }
    }
    assert(done_bytes == dest.len);
}

fn fdatasyncRetrying(fd: linux.fd_t) Error!void {
    for (0..retries_max) |_| {
        switch (linux.errno(linux.fdatasync(fd))) {
            .SUCCESS => return,
            .INTR => continue,
            else => |errno| return errorFromErrno(errno),
        }
    }
    return error.System;
}

fn errorFromErrno(errno: linux.E) Error {
    assert(errno != .SUCCESS);
    return switch (errno) {
        .NOSPC, .DQUOT, .FBIG => error.NoSpace,
        .ACCES, .PERM, .ROFS => error.PermissionDenied,
        .IO => error.InputOutput,
        .NOENT, .NOTDIR => error.Missing,
        .EXIST => error.Exists,
        else => error.System,
    };
}

/// The raw-syscall encoding of an errno (-errno as usize), for injected failures.
fn errnoAsResult(errno: linux.E) usize {
    const value: isize = @intCast(@backingInt(errno));
    return @bitCast(-value);
}

// ---------------------------------------------------------------------------------------------
// Tests. Files live in a directory under /tmp made by each test and removed after; `rmdir`
// failing (directory not empty) fails the test, which also checks that failed writes unlink.

const testing = std.testing;

const TestDir = struct {
    path_buffer: [96]u8,
    path_len: usize,
    name_buffer: [160]u8,

    fn init() !TestDir {
        var dir: TestDir = .{ .path_buffer = undefined, .path_len = 0, .name_buffer = undefined };
        var random_bytes: [8]u8 = undefined;
        _ = linux.getrandom(&random_bytes, random_bytes.len, 0);
        const suffix = std.mem.readInt(u64, &random_bytes, .little);
        const path = try std.fmt.bufPrintSentinel(
            &dir.path_buffer,
            "/tmp/objstore-spill-{d}-{x}",
            .{ linux.getpid(), suffix },
            0,
        );
        dir.path_len = path.len;
        try testing.expectEqual(linux.E.SUCCESS, linux.errno(linux.mkdir(path.ptr, 0o700)));
        return dir;
    }

    /// Removes the directory; fails if a test left a file behind.
    fn deinit(dir: *TestDir) !void {
        const path: [*:0]const u8 = @ptrCast(&dir.path_buffer);
        try testing.expectEqual(linux.E.SUCCESS, linux.errno(linux.rmdir(path)));
    }

    fn file(dir: *TestDir, name: []const u8) [:0]const u8 {
        const path = dir.path_buffer[0..dir.path_len];
        return std.fmt.bufPrintSentinel(&dir.name_buffer, "{s}/{s}", .{ path, name }, 0) catch
            unreachable;
    }
};

fn testId(index: u64) [28]u8 {
    var id: [28]u8 = @splat(0xa5);
    std.mem.writeInt(u64, id[0..8], index, .little);
    return id;
}

fn fileSizeBytes(path: [*:0]const u8) !u64 {
    var statx: linux.Statx = undefined;
    const rc = linux.statx(linux.AT.FDCWD, path, 0, .{ .SIZE = true }, &statx);
    try testing.expectEqual(linux.E.SUCCESS, linux.errno(rc));
    return statx.size;
}

fn fileModeBits(path: [*:0]const u8) !u32 {
    var statx: linux.Statx = undefined;
    const rc = linux.statx(linux.AT.FDCWD, path, 0, .{ .MODE = true }, &statx);
    try testing.expectEqual(linux.E.SUCCESS, linux.errno(rc));
    return statx.mode & 0o777;
}

fn pwriteAll(path: [*:0]const u8, bytes: []const u8, offset_bytes: u64) !void {
    const rc_open = linux.open(path, .{ .ACCMODE = .WRONLY, .CLOEXEC = true }, 0);
    try testing.expectEqual(linux.E.SUCCESS, linux.errno(rc_open));
    const fd: linux.fd_t = @intCast(rc_open);
    defer _ = linux.close(fd);
    const rc = linux.pwrite(fd, bytes.ptr, bytes.len, @intCast(offset_bytes));
    try testing.expectEqual(bytes.len, rc);
}

fn truncateFile(path: [*:0]const u8, size_bytes: u64) !void {
    const rc_open = linux.open(path, .{ .ACCMODE = .WRONLY, .CLOEXEC = true }, 0);
    try testing.expectEqual(linux.E.SUCCESS, linux.errno(rc_open));
    const fd: linux.fd_t = @intCast(rc_open);
    defer _ = linux.close(fd);
    const rc = linux.ftruncate(fd, @intCast(size_bytes));
    try testing.expectEqual(linux.E.SUCCESS, linux.errno(rc));
}

/// Mixed sizes including the edge cases around the 64-byte alignment, more records than io_uring
/// slots (slot reuse), and data starting at odd addresses (CRC alignment prologue).
fn makeTestRecords(pool: []const u8, records: []Record) void {
    const sizes_bytes = [_]u64{ 0, 1, 63, 64, 65, 127, 128, 4095, 4096, 4097, 1000 };
    for (records, 0..) |*record, index| {
        const size_bytes: u64 = switch (index) {
            10, 200 => 1 << 20,
            100 => 5 << 20,
            else => sizes_bytes[index % sizes_bytes.len],
        };
        const start = (index * 7919) % (pool.len - size_bytes);
        record.* = .{ .id = testId(index), .data = pool[start..][0..size_bytes] };
    }
}

fn expectRoundTrip(writer: *Writer, dir: *TestDir, name: []const u8) !void {
    const pool = try testing.allocator.alloc(u8, 6 << 20);
    defer testing.allocator.free(pool);
    var prng = std.Random.DefaultPrng.init(0x5eed_0001);
    prng.random().bytes(pool);

    var records: [300]Record = undefined;
    makeTestRecords(pool, &records);
    const path = dir.file(name);
    const size_bytes = try writer.writeFile(path, &records);
    defer _ = linux.unlink(path);

    try testing.expectEqual(size_bytes, try fileSizeBytes(path));
    try testing.expectEqual(@as(u32, 0o600), try fileModeBits(path));
    const dest = try testing.allocator.alloc(u8, 5 << 20);
    defer testing.allocator.free(dest);
    var offset_expected_bytes: u64 = 0;
    for (records, 0..) |record, index| {
        try testing.expectEqual(offset_expected_bytes, record.file_offset);
        offset_expected_bytes += regionSizeBytes(record.data.len);
        const out = dest[0..record.data.len];
        try readRecord(path, record.file_offset, testId(index), out);
        try testing.expectEqualSlices(u8, record.data, out);
    }
    try testing.expectEqual(offset_expected_bytes, size_bytes);
}

fn uringWriterOrSkip() !Writer {
    const writer = Writer.init(false);
    if (writer.backend != .io_uring) {
        std.debug.print("spill_io: io_uring unavailable here, skipping io_uring test\n", .{});
        return error.SkipZigTest;
    }
    return writer;
}

test "crc32c: standard check value" {
    try testing.expectEqual(@as(u32, 0xe3069283), Crc32c.hash("123456789"));
    try testing.expectEqual(@as(u32, 0), Crc32c.hash(""));
}

test "regionIovecs: skip and cap split the region across calls" {
    var data: [100]u8 = undefined;
    for (&data, 0..) |*byte, index| byte.* = @truncate(index);
    const header = headerFor(testId(1), &data);
    try testing.expectEqual(@as(u64, 192), regionSizeBytes(data.len));
    try testing.expectEqual(@as(u64, 64), regionSizeBytes(0));
    try testing.expectEqual(@as(u64, 128), regionSizeBytes(64));

    // Walk the region in 7-byte steps and check the bytes come out contiguous.
    var rebuilt: [192]u8 = undefined;
    var done_bytes: u64 = 0;
    while (done_bytes < 192) {
        var iovecs: [3]iovec_const = undefined;
        const count = regionIovecs(&header, &data, done_bytes, 7, &iovecs);
        var step_bytes: u64 = 0;
        for (iovecs[0..count]) |iovec| {
            @memcpy(rebuilt[done_bytes + step_bytes ..][0..iovec.len], iovec.base[0..iovec.len]);
            step_bytes += iovec.len;
        }
        try testing.expect(step_bytes >= 1 and step_bytes <= 7);
        done_bytes += step_bytes;
    }
    try testing.expectEqualSlices(u8, std.mem.asBytes(&header), rebuilt[0..64]);
    try testing.expectEqualSlices(u8, &data, rebuilt[64..164]);
    try testing.expect(std.mem.allEqual(u8, rebuilt[164..], 0));
}

test "round trip: pwritev" {
    var dir = try TestDir.init();
    var writer = Writer.init(true);
    defer writer.deinit();
    try testing.expectEqual(Backend.pwritev, writer.backend);
    try expectRoundTrip(&writer, &dir, "spill");
    // Tiny writes force short-write continuation across header, data and padding.
    writer.write_size_max_bytes = 4096 + 17;
    try expectRoundTrip(&writer, &dir, "spill-split");
    try dir.deinit();
}

test "round trip: io_uring" {
    var writer = try uringWriterOrSkip();
    defer writer.deinit();
    var dir = try TestDir.init();
    try expectRoundTrip(&writer, &dir, "spill");
    try testing.expectEqual(Backend.io_uring, writer.backend);
    // Tiny writes force follow-up SQEs for the rest of each region.
    writer.write_size_max_bytes = 4096 + 17;
    try expectRoundTrip(&writer, &dir, "spill-split");
    try testing.expectEqual(Backend.io_uring, writer.backend);
    try dir.deinit();
}

test "io_uring: EINVAL from an op falls back to pwritev for this file and later ones" {
    var writer = try uringWriterOrSkip();
    defer writer.deinit();
    var dir = try TestDir.init();
    writer.inject_write_errno = .INVAL;
    try expectRoundTrip(&writer, &dir, "spill");
    try testing.expectEqual(Backend.pwritev, writer.backend);
    try expectRoundTrip(&writer, &dir, "spill-after");
    try dir.deinit();
}

test "write error unlinks the file on both backends" {
    var dir = try TestDir.init();
    for ([_]bool{ true, false }) |force_pwritev| {
        var writer = Writer.init(force_pwritev);
        defer writer.deinit();
        var records = [_]Record{
            .{ .id = testId(1), .data = "first" },
            .{ .id = testId(2), .data = "second" },
        };
        writer.inject_write_errno = .NOSPC;
        try testing.expectError(error.NoSpace, writer.writeFile(dir.file("spill"), &records));
        writer.inject_write_errno = .IO;
        try testing.expectError(error.InputOutput, writer.writeFile(dir.file("spill"), &records));
    }
    try dir.deinit(); // Fails if a file was left behind.
}

test "O_EXCL: an existing path is an error and is neither overwritten nor unlinked" {
    var dir = try TestDir.init();
    for ([_]bool{ true, false }) |force_pwritev| {
        var writer = Writer.init(force_pwritev);
        defer writer.deinit();
        var first = [_]Record{.{ .id = testId(1), .data = "keep me" }};
        const path = dir.file("spill");
        const size_bytes = try writer.writeFile(path, &first);
        var second = [_]Record{.{ .id = testId(2), .data = "overwrite attempt, longer" }};
        try testing.expectError(error.Exists, writer.writeFile(path, &second));
        try testing.expectEqual(size_bytes, try fileSizeBytes(path));
        var dest: [7]u8 = undefined;
        try readRecord(path, 0, testId(1), &dest);
        try testing.expectEqualStrings("keep me", &dest);
        try testing.expectEqual(linux.E.SUCCESS, linux.errno(linux.unlink(path)));
    }
    try dir.deinit();
}

test "writeFile: missing directory is error.Missing" {
    var writer = Writer.init(false);
    defer writer.deinit();
    var records = [_]Record{.{ .id = testId(1), .data = "x" }};
    try testing.expectError(
        error.Missing,
        writer.writeFile("/tmp/objstore-spill-no-such-dir-3f9a/spill", &records),
    );
}

test "readRecord: every flipped header byte and a flipped data byte are Corrupt" {
    var dir = try TestDir.init();
    var writer = Writer.init(false);
    defer writer.deinit();
    var data: [100]u8 = undefined;
    for (&data, 0..) |*byte, index| byte.* = @truncate(index * 31);
    var records = [_]Record{
        .{ .id = testId(1), .data = "before" },
        .{ .id = testId(2), .data = &data },
    };
    const path = dir.file("spill");
    _ = try writer.writeFile(path, &records);
    const offset_bytes = records[1].file_offset;
    var dest: [100]u8 = undefined;
    try readRecord(path, offset_bytes, testId(2), &dest);

    for (0..record_header_size_bytes + data.len) |flip_index| {
        const flip_offset_bytes = offset_bytes + flip_index;
        const original = if (flip_index < 64) blk: {
            const header = headerFor(testId(2), &data);
            break :blk std.mem.asBytes(&header)[flip_index];
        } else data[flip_index - 64];
        try pwriteAll(path, &.{original ^ 0x10}, flip_offset_bytes);
        try testing.expectError(error.Corrupt, readRecord(path, offset_bytes, testId(2), &dest));
        try pwriteAll(path, &.{original}, flip_offset_bytes);
    }
    try readRecord(path, offset_bytes, testId(2), &dest);
    try testing.expectEqualSlices(u8, &data, &dest);
    try testing.expectEqual(linux.E.SUCCESS, linux.errno(linux.unlink(path)));
    try dir.deinit();
}

test "readRecord: wrong id, wrong size, misaligned offset are Corrupt" {
    var dir = try TestDir.init();
    var writer = Writer.init(false);
    defer writer.deinit();
    var records = [_]Record{.{ .id = testId(1), .data = "payload" }};
    const path = dir.file("spill");
    _ = try writer.writeFile(path, &records);
    var dest: [7]u8 = undefined;
    var dest_long: [8]u8 = undefined;
    try testing.expectError(error.Corrupt, readRecord(path, 0, testId(2), &dest));
    try testing.expectError(error.Corrupt, readRecord(path, 0, testId(1), &dest_long));
    try testing.expectError(error.Corrupt, readRecord(path, 0, testId(1), dest[0..6]));
    try testing.expectError(error.Corrupt, readRecord(path, 1, testId(1), &dest));
    try readRecord(path, 0, testId(1), &dest);
    try testing.expectEqual(linux.E.SUCCESS, linux.errno(linux.unlink(path)));
    try dir.deinit();
}

test "readRecord: missing file, truncated file, offset past the end" {
    var dir = try TestDir.init();
    var writer = Writer.init(false);
    defer writer.deinit();
    var data: [1000]u8 = @splat(0x5a);
    var records = [_]Record{
        .{ .id = testId(1), .data = "first" },
        .{ .id = testId(2), .data = &data },
    };
    const path = dir.file("spill");
    var dest: [1000]u8 = undefined;
    try testing.expectError(error.Missing, readRecord(path, 0, testId(1), dest[0..5]));
    const size_bytes = try writer.writeFile(path, &records);
    const offset_bytes = records[1].file_offset;
    try testing.expectError(error.Missing, readRecord(path, size_bytes, testId(2), &dest));
    try testing.expectError(error.Missing, readRecord(path, 1 << 62, testId(2), &dest));

    try truncateFile(path, offset_bytes + 64 + 500); // Cut inside the data.
    try testing.expectError(error.Missing, readRecord(path, offset_bytes, testId(2), &dest));
    try truncateFile(path, offset_bytes + 30); // Cut inside the header.
    try testing.expectError(error.Missing, readRecord(path, offset_bytes, testId(2), &dest));
    try readRecord(path, 0, testId(1), dest[0..5]); // Earlier records are intact.
    try testing.expectEqualStrings("first", dest[0..5]);
    try testing.expectEqual(linux.E.SUCCESS, linux.errno(linux.unlink(path)));
    try dir.deinit();
}

test "writeFile: no records gives an empty, synced file" {
    var dir = try TestDir.init();
    for ([_]bool{ true, false }) |force_pwritev| {
        var writer = Writer.init(force_pwritev);
        defer writer.deinit();
        const path = dir.file("empty");
        try testing.expectEqual(@as(u64, 0), try writer.writeFile(path, &.{}));
        try testing.expectEqual(@as(u64, 0), try fileSizeBytes(path));
        try testing.expectEqual(linux.E.SUCCESS, linux.errno(linux.unlink(path)));
    }
    try dir.deinit();
}

test "a large record is read by parallel readers: same bytes, and a flipped byte in any part is corrupt" {
    var dir = try TestDir.init();
    defer dir.deinit() catch {};
    var writer = Writer.init(true);
    defer writer.deinit();
    const size_bytes: usize = (40 << 20) + 12_345; // over parallel_read_min_bytes, uneven parts
    const data = try testing.allocator.alloc(u8, size_bytes);
    defer testing.allocator.free(data);
    for (data, 0..) |*byte, index| byte.* = @truncate(index *% 2654435761 >> 7);
    var records = [_]Record{.{ .id = testId(9), .data = data }};
    const path = dir.file("large");
    _ = try writer.writeFile(path, &records);
    defer _ = linux.unlink(path);
    const dest = try testing.allocator.alloc(u8, size_bytes);
    defer testing.allocator.free(dest);
    try readRecord(path, 0, testId(9), dest);
    try testing.expectEqualSlices(u8, data, dest);
    // One byte in each reader's part (the last one past the 4 KiB-aligned split), flipped in turn.
    const flips = [_]u64{ 10, size_bytes / 4 + 4096 + 1, size_bytes / 2 + 7, size_bytes - 1 };
    for (flips) |at| {
        const file_at = record_header_size_bytes + at;
        var byte: [1]u8 = .{data[@intCast(at)] ^ 0x40};
        try pwriteAll(path, &byte, file_at);
        try testing.expectError(error.Corrupt, readRecord(path, 0, testId(9), dest));
        byte[0] = data[@intCast(at)];
        try pwriteAll(path, &byte, file_at);
    }
    try readRecord(path, 0, testId(9), dest);
    try testing.expectEqualSlices(u8, data, dest);
}
