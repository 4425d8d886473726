//! Spilling: moves cold sealed objects from the arena into fused files on disk and back.
//!
//! The order is approximate LRU: each `get` stamps a slot with the store's clock, and a spill
//! takes the oldest stamps among sealed, unpinned objects. An object moves
//! sealed → spilling (this process is its actor) → written and fsynced → spilled, and only
//! then is its memory freed, so a crash at any point loses nothing: the janitor turns a dead
//! actor's `spilling` back into `sealed`. Objects that contain refs are never spilled (their
//! child list lives in their extent).
//!
//! A spiller acts on a `Store` from above: the store never calls it. The files themselves (the
//! table of their states, paths, deletion with their last object) are SpillFiles.zig's.

const std = @import("std");
const assert = std.debug.assert;
const linux = std.os.linux;
const layout = @import("layout.zig");
const status = @import("status.zig");
const sys = @import("sys.zig");
const spill_io = @import("spill_io.zig");
const Index = @import("Index.zig");
const Store = @import("Store.zig");
const Segment = @import("Segment.zig");
const SpillFiles = @import("SpillFiles.zig");

const Spiller = @This();
const State = layout.State;
const ObjectId = layout.ObjectId;
const FileState = layout.FileState;
const Error = status.Error;

/// Bounds one spill call: objects per fused file, and how many candidates are sorted.
const batch_objects_max = 1024;
const batch_bytes_max: u64 = 1 << 30;
const candidates_max = 8192;

store: *Store,
writer: ?spill_io.Writer = null,

const Candidate = struct { slot_index: u32, tick: u32, copy_elsewhere: bool };

pub fn init(store: *Store) Spiller {
    return .{ .store = store };
}

fn segment(self: *Spiller) *Segment {
    return &self.store.segment;
}

pub fn deinit(self: *Spiller) void {
    if (self.writer) |*w| w.deinit();
    self.writer = null;
}

fn ioWriter(self: *Spiller) *spill_io.Writer {
    if (self.writer == null) {
        const forced = if (std.c.getenv("OBJSTORE_IO")) |v| std.mem.eql(u8, std.mem.span(v), "pwritev") else false;
        self.writer = spill_io.Writer.init(forced);
    }
    return &self.writer.?;
}

pub fn backend(self: *Spiller) spill_io.Backend {
    return self.ioWriter().backend;
}

/// Sets the shared spill directory (created 0700 if missing) after checking it is writable.
pub fn configure(self: *Spiller, dir: []const u8) Error!void {
    const h = self.segment().header;
    if (dir.len == 0) {
        h.spill_disabled = 1;
        return;
    }
    // A NUL would end the path the kernel sees early: mkdir would make another directory.
    if (dir.len >= layout.spill_dir_size_max - 64 or dir[0] != '/' or std.mem.indexOfScalar(u8, dir, 0) != null) {
        status.setDetail("spill directory must be an absolute path without NUL, shorter than {d} bytes: '{s}'", .{ layout.spill_dir_size_max - 64, dir });
        return error.InvalidArgument;
    }
    try ensureWritableDir(dir);
    self.store.lock();
    defer self.store.unlock();
    const current = h.spill_dir[0..h.spill_dir_size_bytes];
    if (current.len > 0 and !std.mem.eql(u8, current, dir)) {
        status.setDetail("store '{s}' already spills to '{s}', not '{s}'", .{ self.store.storeName(), current, dir });
        return error.InvalidArgument;
    }
    @memcpy(h.spill_dir[0..dir.len], dir);
    h.spill_dir_size_bytes = @intCast(dir.len);
    h.spill_disabled = 0;
}

fn ensureWritableDir(dir: []const u8) Error!void {
    var buffer: [layout.spill_dir_size_max + 32]u8 = undefined;
    const dir_z = std.mem.printSentinel(&buffer, "{s}", .{dir}, 0) catch unreachable;
    const rc = linux.mkdir(dir_z, 0o700);
    switch (linux.errno(rc)) {
        .SUCCESS, .EXIST => {},
        .ACCES, .PERM, .ROFS => return spillDirError(dir, "cannot be created (permission denied)", error.PermissionDenied),
        .NOENT => return spillDirError(dir, "cannot be created: its parent does not exist", error.InvalidArgument),
        .NOSPC => return spillDirError(dir, "cannot be created: the disk is full", error.NoSpace),
        else => return spillDirError(dir, "cannot be created", error.System),
    }
    const probe = std.mem.printSentinel(&buffer, "{s}/.objstore-probe-{d}", .{ dir, sys.getpid() }, 0) catch unreachable;
    const fd = sys.open(probe, .{ .ACCMODE = .WRONLY, .CREAT = true, .TRUNC = true, .CLOEXEC = true }, 0o600) catch |err| {
        return switch (err) {
            error.PermissionDenied => spillDirError(dir, "is not writable", error.PermissionDenied),
            error.NoSpace => spillDirError(dir, "is on a full disk", error.NoSpace),
            error.NotFound => spillDirError(dir, "is not a directory", error.InvalidArgument),
            else => spillDirError(dir, "cannot be written", error.System),
        };
    };
    sys.close(fd);
    sys.unlink(probe) catch {};
}

fn spillDirError(dir: []const u8, why: []const u8, err: Error) Error {
    status.setDetail("spill directory '{s}' {s}", .{ dir, why });
    return err;
}

fn checkEnabled(self: *Spiller) Error!void {
    const h = self.segment().header;
    if (h.spill_disabled != 0 or h.spill_dir_size_bytes == 0) {
        status.setDetail("store '{s}' has no spill directory (spilling is off)", .{self.store.storeName()});
        return error.SpillDisabled;
    }
}

pub const Outcome = struct { objects: u64, bytes: u64 };

/// Spills the least recently used unpinned objects until `target_bytes` are freed. When the
/// disk is full, objects that still have their spill copy (restored ones) are evicted anyway,
/// since that writes nothing: the store keeps working, trading those copies in and out; the
/// full disk is the error only if that frees too little.
pub fn spillLru(self: *Spiller, target_bytes: u64) Error!Outcome {
    try self.checkEnabled();
    return self.freeLru(target_bytes, false);
}

/// Evicts secondary copies only (least recently used first) until `target_bytes` are freed:
/// what a pull may free by itself. Objects of this node are the program's to spill (it may
/// rather drop views it no longer reads). Needs no spill folder: nothing is written.
pub fn evictCopies(self: *Spiller, target_bytes: u64) Error!Outcome {
    return self.freeLru(target_bytes, true);
}

fn freeLru(self: *Spiller, target_bytes: u64, copies_only: bool) Error!Outcome {
    var candidates: [candidates_max]Candidate = undefined;
    const found = self.collectCandidates(&candidates);
    std.sort.pdq(Candidate, found, {}, olderFirst);
    var outcome = Outcome{ .objects = 0, .bytes = 0 };
    var disk_full = false;
    var next: usize = 0;
    while (outcome.bytes < target_bytes and next < found.len) {
        var batch: [batch_objects_max]u32 = undefined;
        var batch_len: usize = 0;
        var batch_bytes: u64 = 0;
        while (next < found.len and batch_len < batch.len and batch_bytes < batch_bytes_max and outcome.bytes + batch_bytes < target_bytes) : (next += 1) {
            if (copies_only and !found[next].copy_elsewhere) break; // copies come first
            const slot_index = found[next].slot_index;
            if (disk_full and !self.isClean(slot_index)) continue;
            if (!self.beginSpill(slot_index)) continue;
            if (self.isClean(slot_index)) {
                outcome.bytes += self.evictClean(slot_index);
                outcome.objects += 1;
                continue;
            }
            batch[batch_len] = slot_index;
            batch_len += 1;
            batch_bytes += self.segment().index.extras[slot_index].extent_size_bytes;
        }
        if (batch_len == 0) break;
        const freed_bytes = self.writeBatch(batch[0..batch_len]) catch |err| switch (err) {
            // The detail stays set for the caller; go on with what needs no disk.
            error.NoSpace => {
                disk_full = true;
                continue;
            },
            else => return err,
        };
        outcome.bytes += freed_bytes;
        outcome.objects += batch_len;
    }
    if (disk_full and outcome.bytes < target_bytes) return error.NoSpace;
    return outcome;
}

/// Secondary copies first (another node holds the object: evicting one writes nothing and
/// loses nothing), then the least recently used.
fn olderFirst(_: void, a: Candidate, b: Candidate) bool {
    if (a.copy_elsewhere != b.copy_elsewhere) return a.copy_elsewhere;
    // Ticks wrap at 2^32; compare by signed distance.
    return @as(i32, @bitCast(a.tick -% b.tick)) < 0;
}

/// True if freeing the object's memory needs no write: it has a spill file's copy already (it
/// was restored), or it is a secondary copy of an object another node holds.
fn isClean(self: *Spiller, slot_index: u32) bool {
    const extra = &self.segment().index.extras[slot_index];
    return extra.spill_file != 0 or extra.copy_elsewhere != 0;
}

fn collectCandidates(self: *Spiller, out: *[candidates_max]Candidate) []Candidate {
    var n: usize = 0;
    const used = self.segment().index.usedSlots();
    for (used, self.segment().index.extras[0..used.len], 0..) |*slot, *extra, i| {
        if (n == out.len) break;
        const s = State.of(slot.state.load(.acquire));
        if (s.tag != .sealed or slot.pin_holders.load(.monotonic) != 0) continue;
        if (extra.child_count != 0) continue;
        out[n] = .{ .slot_index = @intCast(i), .tick = extra.lru_tick.load(.monotonic), .copy_elsewhere = extra.copy_elsewhere != 0 };
        n += 1;
    }
    return out[0..n];
}

/// sealed → spilling, unless a pin holder appears (Dekker, as in Store.acquirePinBit).
fn beginSpill(self: *Spiller, slot_index: u32) bool {
    const slot = &self.segment().index.slots[slot_index];
    const s = State.of(slot.state.load(.seq_cst));
    if (s.tag != .sealed or self.segment().index.extras[slot_index].child_count != 0) return false;
    if (slot.state.cmpxchgStrong(s.toWord(), s.with(.spilling).toWord(), .seq_cst, .monotonic) != null) return false;
    slot.actor.store(self.segment().actorId(), .release);
    if (slot.pin_holders.load(.seq_cst) != 0) {
        self.endSpill(slot_index, .sealed);
        return false;
    }
    return true;
}

fn endSpill(self: *Spiller, slot_index: u32, tag: layout.Tag) void {
    assert(tag == .sealed or tag == .spilled);
    self.assertActing(slot_index, .spilling);
    if (tag == .spilled) {
        const h = self.segment().header;
        _ = h.spilled_total_bytes.fetchAdd(self.segment().index.extras[slot_index].data_size_bytes, .monotonic);
        _ = h.spilled_total_objects.fetchAdd(1, .monotonic);
    }
    self.segment().index.endTransition(slot_index, .spilling, tag);
}

/// The slot is in transient state `tag` with this attachment as its actor: only then may a
/// spill or a restore write its extra and end the transition.
fn assertActing(self: *Spiller, slot_index: u32, tag: layout.Tag) void {
    const slot = &self.segment().index.slots[slot_index];
    assert(State.of(slot.state.load(.acquire)).tag == tag);
    assert(slot.actor.load(.monotonic) == self.segment().actorId());
}

pub fn spillOne(self: *Spiller, id: *const ObjectId) Error!void {
    try self.checkEnabled();
    const found = self.store.find(id) orelse return error.Absent;
    if (!self.beginSpill(found.slot_index)) {
        status.setDetail("only a sealed, unpinned object without nested refs can be spilled", .{});
        return error.Busy;
    }
    if (self.isClean(found.slot_index)) {
        _ = self.evictClean(found.slot_index);
        return;
    }
    var batch = [1]u32{found.slot_index};
    _ = try self.writeBatch(&batch);
}

/// Spills an object (in `spilling`, this process its actor) whose bytes are kept elsewhere: a
/// spill file (it was restored earlier) or another node (a secondary copy). Only its memory is
/// freed. Returns the bytes freed.
fn evictClean(self: *Spiller, slot_index: u32) u64 {
    const extra = &self.segment().index.extras[slot_index];
    assert(self.isClean(slot_index));
    assert(extra.extent_size_bytes > 0);
    self.store.lock();
    const freed_bytes = self.segment().freeExtentLocked(extra);
    self.endSpill(slot_index, .spilled);
    self.store.unlock();
    self.tryDeleteNow(slot_index);
    return freed_bytes;
}

/// Writes the objects (all in `spilling`, this process their actor) into one new file,
/// then frees their memory. On failure every object goes back to `sealed`.
fn writeBatch(self: *Spiller, slot_indexes: []const u32) Error!u64 {
    assert(slot_indexes.len > 0 and slot_indexes.len <= batch_objects_max);
    var records: [batch_objects_max]spill_io.Record = undefined;
    for (slot_indexes, 0..) |slot_index, i| {
        const extra = &self.segment().index.extras[slot_index];
        self.assertActing(slot_index, .spilling);
        // A first spill of an object without refs inside (their list lives in the extent).
        assert(extra.spill_file == 0 and extra.child_count == 0 and extra.extent_size_bytes > 0);
        var id: ObjectId = undefined;
        self.segment().index.readId(slot_index, &id);
        const data = self.segment().base + self.segment().header.data_offset + extra.extent_offset_bytes;
        records[i] = .{ .id = id, .data = data[0..@intCast(extra.data_size_bytes)] };
    }
    const file_index = SpillFiles.claimForWriting(self.segment()) catch |err| {
        for (slot_indexes) |slot_index| self.endSpill(slot_index, .sealed);
        return err;
    };
    var path_buffer: [SpillFiles.path_size_max]u8 = undefined;
    const file_path = SpillFiles.filePath(self.segment(), &path_buffer, self.segment().spill_files[file_index].serial);
    const written = self.ioWriter().writeFile(file_path, records[0..slot_indexes.len]) catch |err| {
        for (slot_indexes) |slot_index| self.endSpill(slot_index, .sealed);
        SpillFiles.abandonWriting(self.segment(), file_index);
        if (err == error.NoSpace) return self.diskFull(records[0..slot_indexes.len]);
        return ioError(err, file_path);
    };
    SpillFiles.publishWritten(self.segment(), file_index, written, @intCast(slot_indexes.len));
    return self.finishBatch(slot_indexes, records[0..slot_indexes.len], file_index);
}

fn finishBatch(self: *Spiller, slot_indexes: []const u32, records: []const spill_io.Record, file_index: u32) u64 {
    var freed_bytes: u64 = 0;
    self.store.lock();
    for (slot_indexes, records) |slot_index, record| {
        const extra = &self.segment().index.extras[slot_index];
        assert(extra.spill_file == 0);
        assert(record.file_offset + spill_io.regionSizeBytes(record.data.len) <= self.segment().spill_files[file_index].size_bytes);
        // The location first: a reclaimer that finds `spilling` with a location finishes the
        // spill (see Clients.undoTransitionLocked) instead of keeping an extent already freed.
        extra.spill_offset_bytes = record.file_offset;
        extra.spill_file = file_index + 1;
        freed_bytes += self.segment().freeExtentLocked(extra);
        self.endSpill(slot_index, .spilled);
    }
    SpillFiles.endWriting(self.segment(), file_index);
    self.store.unlock();
    // A holder may have let go while we were writing: delete what no one holds now.
    for (slot_indexes) |slot_index| self.tryDeleteNow(slot_index);
    return freed_bytes;
}

/// A spill that found its disk full (the partial file is already gone): says which directory,
/// how many bytes the batch needed and how many are free, and what to do.
fn diskFull(self: *Spiller, records: []const spill_io.Record) Error {
    var needed_bytes: u64 = 0;
    for (records) |record| needed_bytes += spill_io.regionSizeBytes(record.data.len);
    const h = self.segment().header;
    const dir = h.spill_dir[0..h.spill_dir_size_bytes];
    status.setDetail("the disk of spill directory '{s}' is full: spilling {d} object(s) needs {d} bytes, {d} are free " ++
        "(store '{s}': {d} of {d} bytes of memory in use). Free space on that disk, free refs, or init with " ++
        "spill.directory on a larger disk", .{
        dir,                           records.len,      needed_bytes, self.dirFreeBytes() orelse 0, self.store.storeName(),
        h.used_bytes.load(.monotonic), h.capacity_bytes,
    });
    return error.NoSpace;
}

/// Free bytes on the spill directory's filesystem, or null if it cannot be asked.
fn dirFreeBytes(self: *Spiller) ?u64 {
    const h = self.segment().header;
    var buffer: [layout.spill_dir_size_max + 1]u8 = undefined;
    const dir_z = std.mem.printSentinel(&buffer, "{s}", .{h.spill_dir[0..h.spill_dir_size_bytes]}, 0) catch return null;
    const fd = sys.open(dir_z, .{ .ACCMODE = .RDONLY, .DIRECTORY = true, .CLOEXEC = true }, 0) catch return null;
    defer sys.close(fd);
    return sys.freeBytes(fd) catch null;
}

fn ioError(err: spill_io.Error, file_path: []const u8) Error {
    status.setDetail("spill file '{s}': {s}", .{ file_path, @errorName(err) });
    return switch (err) {
        error.NoSpace => error.NoSpace,
        error.PermissionDenied => error.PermissionDenied,
        error.Corrupt => error.Corrupt,
        error.Missing => error.SpillMissing,
        else => error.System,
    };
}

const restore_wait_ns = 30 * std.time.ns_per_s;

/// Where a restore reads the object's record from.
const Source = union(enum) {
    local_file,
    /// The record's region, fetched from the file's remote copy.
    region: []const u8,
};

/// Brings a spilled object back from its spill file. One process restores; the others wait.
pub fn restore(self: *Spiller, id: *const ObjectId) Error!void {
    return self.restoreFrom(id, .local_file);
}

/// Brings a spilled object back from its record's region, fetched from remote storage.
pub fn restoreFromRegion(self: *Spiller, id: *const ObjectId, region: []const u8) Error!void {
    return self.restoreFrom(id, .{ .region = region });
}

pub const Location = struct { file_state: FileState, serial: u64, offset_bytes: u64, region_size_bytes: u64 };

/// Where a spilled object's record is: which file, in which state, and at which offset.
pub fn location(self: *Spiller, id: *const ObjectId) Error!Location {
    const found = self.store.find(id) orelse return error.Absent;
    if (found.state.tag != .spilled and found.state.tag != .restoring) {
        status.setDetail("the object is not spilled", .{});
        return error.InvalidArgument;
    }
    const extra = &self.segment().index.extras[found.slot_index];
    const file_number = extra.spill_file;
    if (file_number == 0 or file_number > layout.spill_file_count_max) return error.SpillMissing;
    const file = &self.segment().spill_files[file_number - 1];
    return .{
        .file_state = SpillFiles.stateOf(file),
        .serial = file.serial,
        .offset_bytes = extra.spill_offset_bytes,
        .region_size_bytes = spill_io.regionSizeBytes(extra.data_size_bytes),
    };
}

fn restoreFrom(self: *Spiller, id: *const ObjectId, source: Source) Error!void {
    const deadline_ns = sys.nowNs() + restore_wait_ns;
    while (sys.nowNs() < deadline_ns) {
        const sequence = self.segment().header.seal_sequence.load(.seq_cst);
        const found = self.store.find(id) orelse return error.Absent;
        switch (found.state.tag) {
            .sealed => return,
            .spilled => {
                if (self.segment().index.extras[found.slot_index].spill_file == 0) {
                    // Not a file's: its copy here was evicted (copy_elsewhere).
                    status.setDetail("this node's copy was evicted from memory; the object is on another node", .{});
                    return error.SpillMissing;
                }
                const slot = &self.segment().index.slots[found.slot_index];
                if (slot.state.cmpxchgStrong(found.state.toWord(), found.state.with(.restoring).toWord(), .seq_cst, .monotonic) == null) {
                    slot.actor.store(self.segment().actorId(), .release);
                    return self.restoreClaimed(found.slot_index, source);
                }
            },
            .restoring, .spilling, .deleting => {
                _ = self.store.maintain(); // a dead restorer's claim is undone here
                sys.futexWait(&self.segment().header.seal_sequence, sequence, 10 * std.time.ns_per_ms);
            },
            else => return error.Absent,
        }
    }
    return error.Timeout;
}

/// Claims an evicted secondary copy (spilled without a file: its bytes are on another node)
/// for a pull to write its bytes back into: spilled → restoring, with a new extent; returns
/// where the bytes go. error.Exists if the object is here in any other way (in memory, spilled
/// to a file, or being restored by another process); end with `endPulledCopy`.
pub fn claimEvictedCopy(self: *Spiller, id: *const ObjectId, size_bytes: u64) Error![]u8 {
    const found = self.store.find(id) orelse return error.Absent;
    const slot_index = found.slot_index;
    const extra = &self.segment().index.extras[slot_index];
    if (!self.isEvicted(found)) return error.Exists;
    if (extra.data_size_bytes != size_bytes) {
        status.setDetail("the source sends {d} bytes for an object of {d} bytes", .{ size_bytes, extra.data_size_bytes });
        return error.Corrupt;
    }
    const slot = &self.segment().index.slots[slot_index];
    if (slot.state.cmpxchgStrong(found.state.toWord(), found.state.with(.restoring).toWord(), .seq_cst, .monotonic) != null) return error.Exists;
    slot.actor.store(self.segment().actorId(), .release);
    if (!self.allocExtent(extra)) {
        self.endRestore(slot_index, .spilled);
        status.setDetail("no room to bring back an object of {d} bytes: {d} of {d} bytes in use", .{ size_bytes, self.segment().header.used_bytes.load(.monotonic), self.segment().header.capacity_bytes });
        return error.StoreFull;
    }
    return (self.segment().base + self.segment().header.data_offset + extra.extent_offset_bytes)[0..@intCast(size_bytes)];
}

/// True if this node's copy of `id` is a secondary one that memory pressure evicted.
pub fn isEvictedCopy(self: *Spiller, id: *const ObjectId) bool {
    const found = self.store.find(id) orelse return false;
    return self.isEvicted(found);
}

/// An evicted copy: spilled without a spill file, its bytes on another node.
fn isEvicted(self: *Spiller, found: Index.Found) bool {
    const extra = &self.segment().index.extras[found.slot_index];
    return found.state.tag == .spilled and extra.isEvictedCopy();
}

/// Ends a pull into a copy claimed by `claimEvictedCopy`: in memory again once every byte
/// arrived and was checked (`complete`), else evicted as before.
pub fn endPulledCopy(self: *Spiller, id: *const ObjectId, complete: bool) void {
    const found = self.store.find(id).?; // restoring: nobody deletes it under us
    const extra = &self.segment().index.extras[found.slot_index];
    self.assertActing(found.slot_index, .restoring);
    assert(extra.copy_elsewhere != 0 and extra.spill_file == 0);
    if (complete) {
        _ = self.segment().header.restored_bytes.fetchAdd(extra.data_size_bytes, .monotonic);
        _ = self.segment().header.restored_objects.fetchAdd(1, .monotonic);
        return self.endRestore(found.slot_index, .sealed);
    }
    self.store.lock();
    _ = self.segment().freeExtentLocked(extra);
    self.store.unlock();
    self.endRestore(found.slot_index, .spilled);
}

fn restoreClaimed(self: *Spiller, slot_index: u32, source: Source) Error!void {
    self.assertActing(slot_index, .restoring);
    const extra = &self.segment().index.extras[slot_index];
    assert(extra.spill_file != 0 and extra.spill_file <= layout.spill_file_count_max);
    if (!self.allocExtent(extra)) {
        self.endRestore(slot_index, .spilled);
        status.setDetail("no room to restore an object of {d} bytes: {d} of {d} bytes in use", .{ extra.data_size_bytes, self.segment().header.used_bytes.load(.monotonic), self.segment().header.capacity_bytes });
        return error.StoreFull;
    }
    var id: ObjectId = undefined;
    self.segment().index.readId(slot_index, &id);
    const file = &self.segment().spill_files[extra.spill_file - 1];
    var path_buffer: [SpillFiles.path_size_max]u8 = undefined;
    const file_path = SpillFiles.filePath(self.segment(), &path_buffer, file.serial);
    const dest = (self.segment().base + self.segment().header.data_offset + extra.extent_offset_bytes)[0..@intCast(extra.data_size_bytes)];
    const read = switch (source) {
        .local_file => spill_io.readRecord(file_path, extra.spill_offset_bytes, id, dest),
        .region => |region| spill_io.verifyRecord(region, id, dest),
    };
    read catch |err| {
        self.store.lock();
        _ = self.segment().freeExtentLocked(extra);
        self.store.unlock();
        self.endRestore(slot_index, .spilled);
        return ioError(err, file_path);
    };
    _ = self.segment().header.restored_bytes.fetchAdd(extra.data_size_bytes, .monotonic);
    _ = self.segment().header.restored_objects.fetchAdd(1, .monotonic);
    // The copy stays (objects never change): spilling this object again only frees its memory.
    self.endRestore(slot_index, .sealed);
}

/// Gives a restoring object (which has no extent while spilled) a new one; false if the arena
/// has no run long enough. A restore does not compact: the caller makes room and retries.
fn allocExtent(self: *Spiller, extra: *layout.SlotExtra) bool {
    assert(extra.extent_size_bytes == 0);
    assert(extra.child_count == 0); // objects with refs inside are never spilled
    const extent_size_bytes = @max(layout.block_size_bytes, std.mem.alignForward(u64, extra.data_size_bytes, layout.block_size_bytes));
    self.store.lock();
    defer self.store.unlock();
    const block = self.segment().bitmap.alloc(extent_size_bytes / layout.block_size_bytes) orelse return false;
    extra.extent_offset_bytes = block * layout.block_size_bytes;
    extra.extent_size_bytes = extent_size_bytes;
    _ = self.segment().header.used_bytes.fetchAdd(extent_size_bytes, .monotonic);
    return true;
}

fn endRestore(self: *Spiller, slot_index: u32, tag: layout.Tag) void {
    assert(tag == .sealed or tag == .spilled);
    self.assertActing(slot_index, .restoring);
    // Sealed in memory, or spilled without an extent: the invariant tryDelete relies on.
    assert((tag == .sealed) == (self.segment().index.extras[slot_index].extent_size_bytes > 0));
    self.segment().index.endTransition(slot_index, .restoring, tag);
    _ = self.segment().header.seal_sequence.fetchAdd(1, .seq_cst);
    sys.futexWakeAll(&self.segment().header.seal_sequence);
    self.tryDeleteNow(slot_index);
}

fn tryDeleteNow(self: *Spiller, slot_index: u32) void {
    const s = State.of(self.segment().index.slots[slot_index].state.load(.acquire));
    self.store.tryDelete(slot_index, s.generation, 0);
}
