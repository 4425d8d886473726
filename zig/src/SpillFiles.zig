//! The spill-file table: one entry per spill file of the store (`<spill dir>/objstore-<store>-
//! <serial>.spill`), with its state (layout.FileState), its writer or claimant (`actor`), and
//! how many objects still have their copy in it. The file goes when its last object does.
//!
//!   free ──claimForWriting──▶ writing ──publishWritten──▶ local ──(RemoteFiles)──▶ …
//!   writing ──abandonWriting──▶ free          local ──last object gone──▶ free (file deleted)
//!
//! Spiller.zig writes the files; RemoteFiles.zig moves them to remote storage and back to
//! `free`. Every transition is a CAS on `state`, or a store by the entry's only actor.

const std = @import("std");
const assert = std.debug.assert;
const layout = @import("layout.zig");
const status = @import("status.zig");
const sys = @import("sys.zig");
const Segment = @import("Segment.zig");

const Error = status.Error;
const FileState = layout.FileState;
const State = layout.State;

/// Room for a spill file's path and its NUL.
pub const path_size_max = layout.spill_dir_size_max + layout.name_size_max + 64;

pub fn stateOf(file: *const layout.SpillFile) FileState {
    return @fromBackingInt(@intCast(file.state.load(.acquire)));
}

pub fn transition(file: *layout.SpillFile, from: FileState, to: FileState) bool {
    assert(from != to);
    return file.state.cmpxchgStrong(@backingInt(from), @backingInt(to), .seq_cst, .monotonic) == null;
}

/// `<spill dir>/objstore-<store>-<serial>.spill`.
pub fn filePath(segment: *const Segment, buffer: *[path_size_max]u8, serial: u64) [:0]const u8 {
    const h = segment.header;
    return std.mem.printSentinel(buffer, "{s}/objstore-{s}-{d}.spill", .{ h.spill_dir[0..h.spill_dir_size_bytes], segment.storeName(), serial }, 0) catch unreachable;
}

/// Takes a free entry for a new file, with a new serial, this attachment its writer.
pub fn claimForWriting(segment: *Segment) Error!u32 {
    for (segment.spill_files, 0..) |*file, i| {
        if (transition(file, .free, .writing)) {
            assert(file.actor.load(.monotonic) == 0);
            file.live_objects.store(0, .release);
            file.serial = segment.header.spill_file_next.fetchAdd(1, .monotonic);
            // Until endWriting: a reclaimer of this process finds the file by it.
            file.actor.store(segment.actorId(), .release);
            return @intCast(i);
        }
    }
    status.setDetail("all {d} spill file entries are in use", .{layout.spill_file_count_max});
    return error.Busy;
}

/// A file whose write failed (the partial file is already gone): its entry is free again.
pub fn abandonWriting(segment: *Segment, file_index: u32) void {
    const file = &segment.spill_files[file_index];
    assert(stateOf(file) == .writing);
    assert(file.actor.load(.monotonic) == segment.actorId());
    file.actor.store(0, .release);
    file.state.store(@backingInt(FileState.free), .release);
}

/// writing → local: the file of `object_count` objects is written and fsynced. Its writer
/// stays its actor until the objects record their copy (`endWriting`).
pub fn publishWritten(segment: *Segment, file_index: u32, size_bytes: u64, object_count: u32) void {
    const file = &segment.spill_files[file_index];
    assert(stateOf(file) == .writing);
    assert(file.actor.load(.monotonic) == segment.actorId());
    assert(object_count > 0);
    file.size_bytes = size_bytes;
    file.live_objects.store(object_count, .release);
    file.state.store(@backingInt(FileState.local), .release);
}

/// Every object of the file records its copy: the file is ready to upload. Under the lock.
pub fn endWriting(segment: *Segment, file_index: u32) void {
    assert(segment.lockHeld());
    const file = &segment.spill_files[file_index];
    assert(file.actor.load(.monotonic) == segment.actorId());
    file.actor.store(0, .release);
}

/// Forgets one object's copy in spill file `spill_file` (1-based; 0 for none); the last one
/// deletes the file.
pub fn dropCopy(segment: *Segment, spill_file: u32) void {
    if (spill_file == 0) return;
    assert(spill_file <= layout.spill_file_count_max);
    const file_index = spill_file - 1;
    const file = &segment.spill_files[file_index];
    const before = file.live_objects.fetchSub(1, .acq_rel);
    assert(before > 0);
    if (before == 1) remove(segment, file_index);
}

/// Deletes one spill file: called once, by the process that dropped its last object. A file
/// being uploaded is left to its uploader; a remote copy waits for a process to delete it.
fn remove(segment: *Segment, file_index: u32) void {
    const file = &segment.spill_files[file_index];
    const serial = file.serial;
    var turns: u32 = 0;
    while (true) : (turns += 1) {
        assert(turns < 64); // each failed transition is another process's single step
        const state = stateOf(file);
        const next: FileState = switch (state) {
            .local => .free,
            .uploading => .upload_orphaned,
            .remote => .remote_unused,
            else => unreachable, // a file with live objects is in one of the three
        };
        if (!transition(file, state, next)) continue;
        if (state == .local) unlinkLocal(segment, serial);
        return;
    }
}

/// Releases the spill files a dead client was writing (called with the lock held, after its
/// objects' transitions were undone): a file no finished spill refers to is deleted, and the
/// others count only the objects that made it into `spilled`.
pub fn reclaimWriter(segment: *Segment, client: u32) void {
    assert(segment.lockHeld());
    for (segment.spill_files, 0..) |*file, file_index| {
        if (file.actor.load(.acquire) != client + 1) continue;
        const state = stateOf(file);
        if (state != .writing and state != .local) continue; // upload claims: RemoteFiles
        const referring = if (state == .local) countReferring(segment, @intCast(file_index)) else 0;
        file.live_objects.store(referring, .release);
        file.actor.store(0, .release);
        if (referring > 0) continue;
        unlinkLocal(segment, file.serial);
        file.state.store(@backingInt(FileState.free), .release);
    }
}

fn countReferring(segment: *Segment, file_index: u32) u32 {
    var count: u32 = 0;
    const used = segment.index.usedSlots();
    for (used, segment.index.extras[0..used.len]) |*slot, *extra| {
        const tag = State.of(slot.state.load(.acquire)).tag;
        if (extra.spill_file == file_index + 1 and (tag == .spilled or tag == .restoring or tag == .deleting)) count += 1;
    }
    return count;
}

/// Deletes the local file `serial`, if it exists.
pub fn unlinkLocal(segment: *const Segment, serial: u64) void {
    var path_buffer: [path_size_max]u8 = undefined;
    sys.unlink(filePath(segment, &path_buffer, serial)) catch {};
}

/// Deletes every local spill file of the store, finished or not (the last process is leaving;
/// remote copies are deleted by the TypeScript side, which owns the remote storage).
pub fn removeAll(segment: *Segment) void {
    if (segment.header.spill_dir_size_bytes == 0) return;
    for (segment.spill_files) |*file| {
        if (stateOf(file) == .free) continue;
        unlinkLocal(segment, file.serial);
        file.state.store(@backingInt(FileState.free), .release);
    }
}

/// The spill folder TypeScript names by default, `<tmp>/objstore-spill-<store>`, goes with the
/// store when it is empty (a folder the program named is left alone).
pub fn removeDefaultDirectory(segment: *Segment) void {
    const h = segment.header;
    const dir = h.spill_dir[0..h.spill_dir_size_bytes];
    const base_name = dir[(std.mem.lastIndexOfScalar(u8, dir, '/') orelse return) + 1 ..];
    if (!std.mem.startsWith(u8, base_name, "objstore-spill-") or !std.mem.eql(u8, base_name["objstore-spill-".len..], segment.storeName())) return;
    var buffer: [layout.spill_dir_size_max + 1]u8 = undefined;
    const dir_z = std.mem.printSentinel(&buffer, "{s}", .{dir}, 0) catch return;
    _ = std.os.linux.rmdir(dir_z);
}
