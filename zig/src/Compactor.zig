//! Compaction: when a create finds enough free memory in total but no run long enough, move
//! the objects out of the cheapest window of the arena to make one.
//!
//! Only sealed, unpinned objects move: sealed → moving (this process is the actor), then the
//! pin bits are re-read (Dekker, as for spilling and deleting) and the move is called off if a
//! reader appeared. A reader that finds `moving` waits for `sealed`, then reads the new
//! offset. The bytes are copied before the offset changes, so a mover that dies leaves either
//! location whole, and the bitmap is rebuilt from the index afterwards either way.
//!
//! Caller holds the allocator lock. Moved objects may have lost their last holder meanwhile;
//! the caller runs `Store.tryDelete` on `moved` after unlocking. Nothing is allocated: the
//! per-word arrays are the segment's scratch space, sized when it was mapped.

const std = @import("std");
const assert = std.debug.assert;
const layout = @import("layout.zig");
const Segment = @import("Segment.zig");

const Compactor = @This();
const State = layout.State;

/// Bounds one compaction: windows tried, objects moved.
const attempts_max = 32;
pub const moved_max = 512;

segment: *Segment,
moved: [moved_max]u32 = undefined,
moved_count: usize = 0,

/// Tries to free a run of `block_count` blocks; true if the bitmap now has one.
pub fn makeRoom(self: *Compactor, block_count: u64) bool {
    const bitmap = self.segment.bitmap;
    assert(self.segment.lockHeld());
    assert(block_count > 0);
    if (bitmap.block_count - bitmap.usedBlocks() < block_count) return false;
    const window_words = std.math.divCeil(u64, block_count, 64) catch unreachable;
    const largest = self.segment.scratch.largest;
    const deque = self.segment.scratch.deque;
    assert(largest.len == bitmap.words.len and deque.len == bitmap.words.len);
    var skip_before_word: u64 = 0;
    var attempt: u32 = 0;
    while (attempt < attempts_max) : (attempt += 1) {
        self.measureOccupants(largest);
        const start_word = cheapestWindow(bitmap.words, largest, deque, window_words, skip_before_word) orelse return false;
        const blocker_end_word = self.clearWindow(start_word, window_words) orelse {
            _ = self.segment.header.compactions.fetchAdd(1, .monotonic);
            return true;
        };
        skip_before_word = blocker_end_word; // an object there cannot move: look past it
    }
    return false;
}

const unmovable: u32 = std.math.maxInt(u32);

/// For each bitmap word, the size in blocks of the largest object over it (`unmovable` for a
/// pinned or unsealed one): a window is cheap when everything in it is small and movable.
fn measureOccupants(self: *Compactor, largest: []u32) void {
    @memset(largest, 0);
    const used = self.segment.index.usedSlots();
    for (used, self.segment.index.extras[0..used.len]) |*slot, *extra| {
        const tag = State.of(slot.state.load(.acquire)).tag;
        if (tag == .empty or tag == .reserved or tag == .spilled) continue;
        if (extra.extent_size_bytes == 0) continue;
        const movable = tag == .sealed and slot.pin_holders.load(.monotonic) == 0;
        const blocks = extra.extent_size_bytes / layout.block_size_bytes;
        const weight: u32 = if (movable) @intCast(@min(blocks, unmovable - 1)) else unmovable;
        const first_word = extra.extent_offset_bytes / layout.block_size_bytes / 64;
        const last_word = (extra.extent_offset_bytes / layout.block_size_bytes + blocks - 1) / 64;
        for (largest[first_word .. last_word + 1]) |*w| w.* = @max(w.*, weight);
    }
}

/// The window of `window_words` words from `from_word` on whose largest occupant is smallest,
/// then with the fewest used blocks. Sliding maximum with a monotonic deque of word indexes.
fn cheapestWindow(words: []const u64, largest: []const u32, deque: []u64, window_words: u64, from_word: u64) ?u64 {
    if (from_word + window_words > words.len) return null;
    var head: usize = 0;
    var tail: usize = 0;
    var used: u64 = 0;
    var best: ?u64 = null;
    var best_largest: u32 = unmovable;
    var best_used: u64 = std.math.maxInt(u64);
    var end = from_word;
    while (end < words.len) : (end += 1) {
        while (tail > head and largest[deque[tail - 1]] <= largest[end]) tail -= 1;
        deque[tail] = end;
        tail += 1;
        used += @popCount(words[end]);
        if (end + 1 < from_word + window_words) continue;
        const start = end + 1 - window_words;
        if (start > from_word) used -= @popCount(words[start - 1]);
        while (deque[head] < start) head += 1;
        const window_largest = largest[deque[head]];
        if (window_largest == unmovable) continue;
        if (window_largest < best_largest or (window_largest == best_largest and used < best_used)) {
            best = start;
            best_largest = window_largest;
            best_used = used;
        }
    }
    return best;
}

/// Moves every object out of the window and returns null; or, if one cannot move, returns the
/// word just past it, having moved nothing.
fn clearWindow(self: *Compactor, start_word: u64, window_words: u64) ?u64 {
    const first_byte = start_word * 64 * layout.block_size_bytes;
    const end_byte = (start_word + window_words) * 64 * layout.block_size_bytes;
    var occupants: [moved_max]u32 = undefined;
    var count: usize = 0;
    const used = self.segment.index.usedSlots();
    for (used, self.segment.index.extras[0..used.len], 0..) |*slot, *extra, i| {
        const tag = State.of(slot.state.load(.acquire)).tag;
        const holds_extent = tag != .empty and tag != .reserved and tag != .spilled and extra.extent_size_bytes > 0;
        if (!holds_extent) continue;
        if (extra.extent_offset_bytes >= end_byte or extra.extent_offset_bytes + extra.extent_size_bytes <= first_byte) continue;
        if (count == occupants.len or !self.beginMove(@intCast(i))) {
            for (occupants[0..count]) |claimed| self.endMove(claimed);
            const blocker_end_byte = extra.extent_offset_bytes + extra.extent_size_bytes;
            return @max(start_word + 1, std.math.divCeil(u64, blocker_end_byte, 64 * layout.block_size_bytes) catch unreachable);
        }
        occupants[count] = @intCast(i);
        count += 1;
    }
    assert(count <= occupants.len);
    // Fill the window so that every new home lands outside it.
    const words = self.segment.bitmap.words;
    assert(start_word + window_words <= words.len);
    for (words[start_word..][0..window_words]) |*w| w.* = ~@as(u64, 0);
    var all_moved = true;
    for (occupants[0..count]) |slot_index| {
        if (all_moved) all_moved = self.relocate(slot_index);
        self.endMove(slot_index);
    }
    // The index says where everything is now; the bitmap follows it.
    self.segment.rebuildBitmapLocked();
    return if (all_moved) null else start_word + window_words;
}

/// sealed → moving, unless a reader holds a pin.
fn beginMove(self: *Compactor, slot_index: u32) bool {
    const slot = &self.segment.index.slots[slot_index];
    const s = State.of(slot.state.load(.seq_cst));
    if (s.tag != .sealed or slot.pin_holders.load(.seq_cst) != 0) return false;
    if (slot.state.cmpxchgStrong(s.toWord(), s.with(.moving).toWord(), .seq_cst, .monotonic) != null) return false;
    slot.actor.store(self.segment.actorId(), .release);
    if (slot.pin_holders.load(.seq_cst) == 0) return true;
    self.endMove(slot_index);
    return false;
}

fn endMove(self: *Compactor, slot_index: u32) void {
    self.assertMoving(slot_index);
    self.segment.index.endTransition(slot_index, .moving, .sealed);
    if (self.moved_count < moved_max) {
        self.moved[self.moved_count] = slot_index;
        self.moved_count += 1;
    }
}

/// The slot is `moving` with this attachment as its actor: only then may its extent change.
fn assertMoving(self: *Compactor, slot_index: u32) void {
    const slot = &self.segment.index.slots[slot_index];
    assert(State.of(slot.state.load(.acquire)).tag == .moving);
    assert(slot.actor.load(.monotonic) == self.segment.actorId());
}

/// Copies one object to a new extent outside the window and points its slot there.
fn relocate(self: *Compactor, slot_index: u32) bool {
    assert(self.segment.lockHeld());
    self.assertMoving(slot_index);
    const segment = self.segment;
    const extra = &segment.index.extras[slot_index];
    assert(extra.extent_size_bytes > 0);
    const blocks = extra.extent_size_bytes / layout.block_size_bytes;
    const new_block = segment.bitmap.alloc(blocks) orelse return false;
    // The window is marked used, so the new extent cannot overlap the old one.
    assert(new_block * layout.block_size_bytes >= extra.extent_offset_bytes + extra.extent_size_bytes or
        (new_block + blocks) * layout.block_size_bytes <= extra.extent_offset_bytes);
    assert((new_block + blocks) * layout.block_size_bytes <= segment.header.capacity_bytes);
    const data = segment.base + segment.header.data_offset;
    const new_offset = new_block * layout.block_size_bytes;
    @memcpy(data[new_offset..][0..extra.extent_size_bytes], data[extra.extent_offset_bytes..][0..extra.extent_size_bytes]);
    @atomicStore(u64, &extra.extent_offset_bytes, new_offset, .release);
    return true;
}
