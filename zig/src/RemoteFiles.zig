//! Remote copies of spill files (S3): the claims a TypeScript process makes while it copies a
//! file out or deletes a copy. The native core never talks to remote storage; it keeps the
//! state of each file (layout.FileState, in the table of SpillFiles.zig) so that many processes
//! can share the work and a dead one's claim is undone:
//!
//!   local ──claimUpload──▶ uploading ──finishUpload(ok)──▶ remote ──last object gone──▶
//!   remote_unused ──claimDelete──▶ remote_deleting ──finishDelete(ok)──▶ free
//!
//! A failed copy or delete goes back one step, to be tried again. The local file is deleted
//! only once its copy is complete; restores of a remote file's objects read a byte range of
//! the copy and hand it to Spiller.restoreFromRegion, which checks it as it checks a file.

const std = @import("std");
const assert = std.debug.assert;
const layout = @import("layout.zig");
const Segment = @import("Segment.zig");
const SpillFiles = @import("SpillFiles.zig");

const FileState = layout.FileState;
const stateOf = SpillFiles.stateOf;
const transition = SpillFiles.transition;

pub const Claim = struct { file_index: u32, serial: u64, size_bytes: u64 };

fn claim(segment: *Segment, from: FileState, to: FileState) ?Claim {
    for (segment.spill_files, 0..) |*file, i| {
        if (stateOf(file) != from) continue;
        // A local file whose writer has not recorded every object yet is not ready to copy.
        if (from == .local and file.actor.load(.seq_cst) != 0) continue;
        if (!transition(file, from, to)) continue;
        file.actor.store(segment.actorId(), .release);
        return .{ .file_index = @intCast(i), .serial = file.serial, .size_bytes = file.size_bytes };
    }
    return null;
}

/// Claims a written local file to copy to remote storage.
pub fn claimUpload(segment: *Segment) ?Claim {
    return claim(segment, .local, .uploading);
}

/// Ends an upload claimed by this process. On success the file is remote and its local copy
/// deleted. If its objects went away meanwhile, the copy (complete or not) is left for deletion.
pub fn finishUpload(segment: *Segment, c: Claim, copied: bool) void {
    const file = &segment.spill_files[c.file_index];
    assert(file.serial == c.serial);
    assert(file.actor.load(.acquire) == segment.actorId());
    file.actor.store(0, .release);
    if (transition(file, .uploading, if (copied) .remote else .local)) {
        if (copied) SpillFiles.unlinkLocal(segment, c.serial);
        return;
    }
    // A failed PUT may still have stored the object: delete whatever is there.
    assert(transition(file, .upload_orphaned, .remote_unused));
    SpillFiles.unlinkLocal(segment, c.serial);
}

/// Claims a remote copy whose objects are all gone, to delete it.
pub fn claimDelete(segment: *Segment) ?Claim {
    return claim(segment, .remote_unused, .remote_deleting);
}

pub fn finishDelete(segment: *Segment, c: Claim, deleted: bool) void {
    const file = &segment.spill_files[c.file_index];
    assert(file.serial == c.serial and stateOf(file) == .remote_deleting);
    assert(file.actor.load(.acquire) == segment.actorId());
    file.actor.store(0, .release);
    assert(transition(file, .remote_deleting, if (deleted) .free else .remote_unused));
}

/// Undoes the claims of a dead client (called with the allocator lock held).
pub fn reclaimClient(segment: *Segment, client: u32) void {
    assert(segment.lockHeld());
    for (segment.spill_files) |*file| {
        if (file.actor.load(.acquire) != client + 1) continue;
        file.actor.store(0, .release);
        switch (stateOf(file)) {
            // The local file is deleted only after the copy is complete: it is still there.
            .uploading => _ = transition(file, .uploading, .local),
            .upload_orphaned => if (transition(file, .upload_orphaned, .remote_unused)) SpillFiles.unlinkLocal(segment, file.serial),
            .remote_deleting => _ = transition(file, .remote_deleting, .remote_unused),
            else => {},
        }
    }
}
