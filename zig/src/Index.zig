//! The object index: a fixed-capacity open-addressing table of `Slot`s keyed by object id.
//!
//! Lookups are lock-free: read the state, copy the id, re-read the state; a changed
//! generation means the slot was reused under us, so look again. Insertions (`reserve`)
//! happen only under the store's allocator lock, so two creators never race for one id.
//! Deleted slots become tombstones, which later insertions reuse; `empty` ends a probe.

const std = @import("std");
const assert = std.debug.assert;
const layout = @import("layout.zig");
const status = @import("status.zig");

const Index = @This();
const State = layout.State;
const Tag = layout.Tag;
const ObjectId = layout.ObjectId;

slots: []layout.Slot,
extras: []layout.SlotExtra,

pub const Found = struct { slot_index: u32, state: State };

fn home(self: *const Index, id: *const ObjectId) usize {
    return @intCast(std.hash.Wyhash.hash(0x6f626a73, id) & (self.slots.len - 1));
}

pub fn readId(self: *const Index, slot_index: u32, out: *ObjectId) void {
    for (&self.slots[slot_index].id_words, 0..) |*src, k| {
        std.mem.writeInt(u32, out[k * 4 ..][0..4], src.load(.monotonic), .little);
    }
}

fn idEquals(self: *const Index, slot_index: u32, id: *const ObjectId) bool {
    var stored: ObjectId = undefined;
    self.readId(slot_index, &stored);
    return std.mem.eql(u8, &stored, id);
}

/// The slot holding `id` in any live state, or null. Lock-free.
pub fn find(self: *const Index, id: *const ObjectId) ?Found {
    const mask = self.slots.len - 1;
    var i = self.home(id);
    var probes: usize = 0;
    var retries: u32 = 0;
    while (probes < self.slots.len) {
        const slot = &self.slots[i];
        const before = State.of(slot.state.load(.acquire));
        switch (before.tag) {
            .empty => return null,
            .tombstone, .reserved => {},
            else => {
                const same_id = self.idEquals(@intCast(i), id);
                const after = State.of(slot.state.load(.acquire));
                if (after.generation != before.generation and retries < 1000) {
                    retries += 1;
                    continue; // reused while we read its id: read it again
                }
                if (same_id and after.tag != .tombstone and after.tag != .reserved) {
                    return .{ .slot_index = @intCast(i), .state = after };
                }
            },
        }
        probes += 1;
        i = (i + 1) & mask;
    }
    return null;
}

/// Claims a slot for a new `id`; caller holds the allocator lock. The slot stays `reserved`
/// (invisible to lookups) until `publish`.
pub fn reserve(self: *Index, id: *const ObjectId, actor: u32) status.Error!u32 {
    const mask = self.slots.len - 1;
    var candidate: ?usize = null;
    var purged = false;
    probe: while (true) {
        var i = self.home(id);
        var probes: usize = 0;
        var tombstones: usize = 0;
        candidate = null;
        while (probes < self.slots.len) : (probes += 1) {
            const s = State.of(self.slots[i].state.load(.acquire));
            switch (s.tag) {
                .empty => {
                    if (candidate == null) candidate = i;
                    break;
                },
                .tombstone => {
                    tombstones += 1;
                    if (candidate == null) candidate = i;
                },
                .reserved => unreachable, // reserved slots exist only under the lock we hold
                else => if (self.idEquals(@intCast(i), id)) {
                    status.setDetail("an object with this id already exists", .{});
                    return error.Exists;
                },
            }
            // A long probe made mostly of tombstones: they outlived their use (the table was
            // once full, so no empty slot let `retire` clear them). Clear them and start over.
            if (!purged and probes > long_probe and tombstones * 2 > probes) {
                purged = true;
                _ = self.purgeTombstones();
                continue :probe;
            }
            i = (i + 1) & mask;
        }
        break;
    }
    const chosen = candidate orelse {
        status.setDetail("the store already holds its maximum of {d} objects; free refs or use a larger store", .{self.slots.len});
        return error.IndexFull;
    };
    const slot = &self.slots[chosen];
    const old = State.of(slot.state.load(.acquire));
    const next = State{ .nested = 0, .generation = old.generation +% 1, .tag = .reserved };
    slot.state.store(next.toWord(), .seq_cst);
    for (&slot.id_words, 0..) |*dst, k| dst.store(std.mem.readInt(u32, id[k * 4 ..][0..4], .little), .monotonic);
    slot.actor.store(actor, .release);
    return @intCast(chosen);
}

const long_probe = 128;

/// Empties every tombstone that no live object's probe passes through; returns how many.
/// Caller holds the allocator lock (no insert races). A live object at j whose home is h
/// probes [h, j): marking those ranges (a difference array over the circle) finds the
/// tombstones still needed; the others become empty, which lock-free readers cannot notice.
pub fn purgeTombstones(self: *Index) u64 {
    const n = self.slots.len;
    const cover = std.heap.page_allocator.alloc(i32, n) catch return 0;
    defer std.heap.page_allocator.free(cover);
    @memset(cover, 0);
    for (self.slots, 0..) |*slot, j| {
        switch (State.of(slot.state.load(.acquire)).tag) {
            .empty, .tombstone => continue,
            else => {},
        }
        var id: ObjectId = undefined;
        self.readId(@intCast(j), &id);
        const h = self.home(&id);
        if (h == j) continue;
        cover[h] += 1;
        cover[j] -= 1;
        if (j < h) cover[0] += 1; // the range wraps past the end
    }
    var emptied: u64 = 0;
    var covering: i32 = 0;
    for (self.slots, 0..) |*slot, p| {
        covering += cover[p];
        assert(covering >= 0);
        const s = State.of(slot.state.load(.acquire));
        if (s.tag != .tombstone or covering > 0) continue;
        slot.state.store(s.with(.empty).toWord(), .seq_cst);
        emptied += 1;
    }
    return emptied;
}

/// Makes a reserved slot visible in `tag` (writing).
pub fn publish(self: *Index, slot_index: u32, tag: Tag) void {
    const slot = &self.slots[slot_index];
    const s = State.of(slot.state.load(.acquire));
    assert(s.tag == .reserved);
    slot.state.store(s.with(tag).toWord(), .seq_cst);
}

/// Returns a reserved slot unused (allocation failed).
pub fn release(self: *Index, slot_index: u32) void {
    assert(State.of(self.slots[slot_index].state.load(.acquire)).tag == .reserved);
    self.retire(slot_index);
}

/// Ends a slot's object: a tombstone, or `empty` when the next slot is empty, which also
/// empties the tombstones just before it. Caller holds the allocator lock (no insert races).
///
/// Safe for lock-free readers: an object at position p was inserted at the first free slot
/// of its probe, so every slot between its home and p was in use then and can only become
/// empty once p itself is empty; a probe that stops at a new `empty` misses nothing.
pub fn retire(self: *Index, slot_index: u32) void {
    const mask = self.slots.len - 1;
    const slot = &self.slots[slot_index];
    const s = State.of(slot.state.load(.acquire));
    slot.actor.store(0, .release);
    const next = State.of(self.slots[(slot_index + 1) & mask].state.load(.acquire));
    if (next.tag != .empty) {
        slot.state.store(s.with(.tombstone).toWord(), .seq_cst);
        return;
    }
    slot.state.store(s.with(.empty).toWord(), .seq_cst);
    var i = (slot_index + mask) & mask;
    var steps: usize = 0;
    while (steps < mask) : (steps += 1) {
        const before = State.of(self.slots[i].state.load(.acquire));
        if (before.tag != .tombstone) break;
        self.slots[i].state.store(before.with(.empty).toWord(), .seq_cst);
        i = (i + mask) & mask;
    }
}

/// Ends a transient state that this process is the actor of: clears the actor and moves the
/// tag from `from` to `to`, keeping the generation and the nested count (which other processes
/// may change meanwhile, hence the CAS loop; it only retries when they do).
pub fn endTransition(self: *Index, slot_index: u32, from: Tag, to: Tag) void {
    const slot = &self.slots[slot_index];
    slot.actor.store(0, .release);
    var attempt: u32 = 0;
    while (attempt < 1_000_000) : (attempt += 1) {
        const s = State.of(slot.state.load(.seq_cst));
        assert(s.tag == from);
        if (slot.state.cmpxchgWeak(s.toWord(), s.with(to).toWord(), .seq_cst, .monotonic) == null) return;
    }
    unreachable; // a million concurrent nested-count changes on one object
}

/// Counts one more containing object for `id`; false if the object is gone.
pub fn addNested(self: *Index, id: *const ObjectId) bool {
    var attempt: u32 = 0;
    while (attempt < 1000) : (attempt += 1) {
        const found = self.find(id) orelse return false;
        const s = found.state;
        switch (s.tag) {
            .writing, .sealed, .spilling, .spilled, .restoring, .moving => {},
            else => return false,
        }
        assert(s.nested < std.math.maxInt(u32));
        const next = State{ .nested = s.nested + 1, .generation = s.generation, .tag = s.tag };
        if (self.slots[found.slot_index].state.cmpxchgWeak(s.toWord(), next.toWord(), .seq_cst, .monotonic) == null) return true;
    }
    return false;
}

/// Counts one fewer containing object; returns the new state, or null if not found.
pub fn dropNested(self: *Index, id: *const ObjectId) ?Found {
    var attempt: u32 = 0;
    while (attempt < 1000) : (attempt += 1) {
        const found = self.find(id) orelse return null;
        const s = found.state;
        if (s.nested == 0) return null;
        const next = State{ .nested = s.nested - 1, .generation = s.generation, .tag = s.tag };
        if (self.slots[found.slot_index].state.cmpxchgWeak(s.toWord(), next.toWord(), .seq_cst, .monotonic) == null) {
            return .{ .slot_index = found.slot_index, .state = next };
        }
    }
    return null;
}

fn testIndex(comptime n: usize, slots: *[n]layout.Slot, extras: *[n]layout.SlotExtra) Index {
    @memset(std.mem.sliceAsBytes(slots), 0);
    @memset(std.mem.sliceAsBytes(extras), 0);
    return .{ .slots = slots, .extras = extras };
}

fn testId(k: u32) ObjectId {
    var id: ObjectId = @splat(0);
    std.mem.writeInt(u32, id[0..4], k, .little);
    return id;
}

test "reserve, publish, find, tombstone reuse and duplicates" {
    var slots: [64]layout.Slot = undefined;
    var extras: [64]layout.SlotExtra = undefined;
    var index = testIndex(64, &slots, &extras);
    const a = testId(1);
    const b = testId(2);
    try std.testing.expect(index.find(&a) == null);
    const ia = try index.reserve(&a, 1);
    try std.testing.expect(index.find(&a) == null); // reserved is invisible
    index.publish(ia, .writing);
    try std.testing.expectEqual(ia, index.find(&a).?.slot_index);
    try std.testing.expectError(error.Exists, index.reserve(&a, 1));
    const ib = try index.reserve(&b, 1);
    index.publish(ib, .sealed);
    // Delete a; b stays findable past the tombstone; a new object reuses the tombstone.
    const sa = State.of(slots[ia].state.load(.monotonic));
    index.retire(ia);
    try std.testing.expect(index.find(&a) == null);
    try std.testing.expect(index.find(&b) != null);
    const ia2 = try index.reserve(&a, 1);
    try std.testing.expect(State.of(slots[ia2].state.load(.monotonic)).generation != sa.generation or ia2 != ia);
}

test "retired slots next to an empty slot become empty, and lookups still find the rest" {
    var slots: [64]layout.Slot = undefined;
    var extras: [64]layout.SlotExtra = undefined;
    var index = testIndex(64, &slots, &extras);
    var placed: [40]u32 = undefined;
    for (&placed, 0..) |*p, k| {
        p.* = try index.reserve(&testId(@intCast(k)), 1);
        index.publish(p.*, .sealed);
    }
    var k: u32 = 0;
    while (k < 40) : (k += 2) index.retire(placed[k]);
    k = 1;
    while (k < 40) : (k += 2) try std.testing.expect(index.find(&testId(k)) != null);
    k = 1;
    while (k < 40) : (k += 2) index.retire(placed[k]);
    for (&slots) |*slot| try std.testing.expectEqual(Tag.empty, State.of(slot.state.load(.monotonic)).tag);
}

test "tombstones left by a once-full table are purged, and lookups still find the rest" {
    var slots: [256]layout.Slot = undefined;
    var extras: [256]layout.SlotExtra = undefined;
    var index = testIndex(256, &slots, &extras);
    var placed: [256]u32 = undefined;
    for (&placed, 0..) |*p, k| {
        p.* = try index.reserve(&testId(@intCast(k)), 1);
        index.publish(p.*, .sealed);
    }
    // Full: no empty slot, so every retire leaves a tombstone.
    var k: u32 = 0;
    while (k < 256) : (k += 1) if (k % 5 != 0) index.retire(placed[k]);
    const emptied = index.purgeTombstones();
    try std.testing.expect(emptied > 0);
    k = 0;
    while (k < 256) : (k += 5) try std.testing.expect(index.find(&testId(k)) != null);
    k = 1;
    while (k < 256) : (k += 5) try std.testing.expect(index.find(&testId(k)) == null);
}

test "a full index is an error, not a hang" {
    var slots: [64]layout.Slot = undefined;
    var extras: [64]layout.SlotExtra = undefined;
    var index = testIndex(64, &slots, &extras);
    var k: u32 = 0;
    while (k < 64) : (k += 1) index.publish(try index.reserve(&testId(k), 1), .sealed);
    try std.testing.expectError(error.IndexFull, index.reserve(&testId(999), 1));
    try std.testing.expect(index.find(&testId(999)) == null);
    try std.testing.expect(index.find(&testId(63)) != null);
}

test "nested counts go up and down and stop at gone objects" {
    var slots: [64]layout.Slot = undefined;
    var extras: [64]layout.SlotExtra = undefined;
    var index = testIndex(64, &slots, &extras);
    const a = testId(7);
    index.publish(try index.reserve(&a, 1), .sealed);
    try std.testing.expect(index.addNested(&a));
    try std.testing.expect(index.addNested(&a));
    try std.testing.expectEqual(@as(u32, 1), index.dropNested(&a).?.state.nested);
    try std.testing.expectEqual(@as(u32, 0), index.dropNested(&a).?.state.nested);
    try std.testing.expect(index.dropNested(&a) == null);
    try std.testing.expect(!index.addNested(&testId(8)));
}
