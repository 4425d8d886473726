//! The object index: dense slots, found through an open-addressing table of buckets.
//!
//! Slots (a 64-byte `Slot` and a 64-byte `SlotExtra` each) are handed out lowest first from a
//! bitmap, so the slots in use stay packed below `high_water`: scans stop there, and the pages of
//! slots never used are never touched. A bucket (8 bytes) holds slot index + 1 and 32 bits of the
//! id's hash, 0 when empty; the table has at least twice as many buckets as there are slots, so
//! it is at most half full and a probe ends at an empty bucket within a few steps.
//!
//! Lookups are lock-free: probe the buckets from the id's home; for a bucket whose hash matches,
//! read the slot's state, copy its id, re-read the state (a changed generation means the slot
//! was reused under us: read it again). Insertions (`reserve`) and deletions (`retire`) happen
//! only under the store's allocator lock, so two creators never race for one id.
//!
//! A deletion leaves no tombstone: the entries after it move back into the hole (backward
//! shift), so probe lengths depend only on the objects alive, however many came and went. A
//! move can make a lookup running beside it miss an entry it already passed; a deletion that
//! moves entries makes `epoch` odd while it does, and a lookup that missed reports `unstable`
//! when the epoch was odd or changed meanwhile, for its caller to look again (Store.find).

const std = @import("std");
const assert = std.debug.assert;
const layout = @import("layout.zig");
const status = @import("status.zig");

const Index = @This();
const State = layout.State;
const Tag = layout.Tag;
const ObjectId = layout.ObjectId;
const Atomic = std.atomic.Value;

slots: []layout.Slot,
extras: []layout.SlotExtra,
buckets: []Atomic(u64),
/// Bit set: the slot is in use (reserved or beyond). Bits past the last slot stay set.
slot_bits: []u64,
/// Bit w set: `slot_bits[w]` has a free slot. Written under the lock only, like `slot_bits`.
slot_summary: []u64,
state: *layout.IndexState,

pub const Found = struct { slot_index: u32, state: State };

pub const Lookup = union(enum) {
    found: Found,
    absent,
    /// Entries moved while the probe ran, which may have hidden the id: look again.
    unstable,
};

/// The home bucket and the 32 hash bits stored beside the slot index.
pub fn hashOf(id: *const ObjectId) u32 {
    return @truncate(std.hash.Wyhash.hash(0x6f626a73, id));
}

fn home(self: *const Index, hash: u32) usize {
    return hash & (self.buckets.len - 1);
}

fn entryOf(hash: u32, slot_index: u32) u64 {
    return (@as(u64, hash) << 32) | (@as(u64, slot_index) + 1);
}

fn entryHash(entry: u64) u32 {
    return @intCast(entry >> 32);
}

fn entrySlot(entry: u64) u32 {
    assert(entry != 0);
    return @intCast((entry & 0xffff_ffff) - 1);
}

/// Prepares a fresh index (its memory zeroed): every slot free, no bucket used.
pub fn initEmpty(self: *Index) void {
    assert(std.math.isPowerOfTwo(self.buckets.len));
    assert(self.buckets.len >= 2 * self.slots.len);
    assert(self.slot_bits.len * 64 >= self.slots.len and self.slot_bits.len * 64 - self.slots.len < 64);
    @memset(self.slot_bits, 0);
    self.markTailUsed();
    self.recomputeSummary();
    self.state.* = std.mem.zeroes(layout.IndexState);
}

fn markTailUsed(self: *Index) void {
    const tail_bits = self.slot_bits.len * 64 - self.slots.len;
    if (tail_bits == 0) return;
    const used_from: u6 = @intCast(64 - tail_bits);
    self.slot_bits[self.slot_bits.len - 1] |= ~@as(u64, 0) << used_from;
}

fn recomputeSummary(self: *Index) void {
    @memset(self.slot_summary, 0);
    for (self.slot_bits, 0..) |bits, w| {
        if (bits != ~@as(u64, 0)) self.slot_summary[w / 64] |= @as(u64, 1) << @intCast(w % 64);
    }
    self.state.summary_hint = 0;
}

/// One past the highest slot in use; slots from here on are empty. Lock-free.
pub fn highWater(self: *const Index) u32 {
    return self.state.high_water.load(.acquire);
}

/// The slots a scan must visit (their states may change meanwhile).
pub fn usedSlots(self: *const Index) []layout.Slot {
    return self.slots[0..self.highWater()];
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

/// Looks `id` up once, lock-free: the slot holding it in a visible state, absent, or unstable
/// (a deletion moved entries meanwhile; look again). Under the allocator lock never unstable.
pub fn lookup(self: *const Index, id: *const ObjectId) Lookup {
    const mask = self.buckets.len - 1;
    const hash = hashOf(id);
    const epoch_before = self.state.epoch.load(.acquire);
    var i = self.home(hash);
    var probes: usize = 0;
    var rereads: u32 = 0;
    while (probes < self.buckets.len) {
        // Acquire: the epoch re-read below cannot move before these loads.
        const entry = self.buckets[i].load(.acquire);
        if (entry == 0) break;
        if (entryHash(entry) == hash) {
            const slot_index = entrySlot(entry);
            const slot = &self.slots[slot_index];
            const before = State.of(slot.state.load(.acquire));
            if (visible(before.tag)) {
                const same_id = self.idEquals(slot_index, id);
                const after = State.of(slot.state.load(.acquire));
                if (after.generation != before.generation and rereads < 1000) {
                    rereads += 1;
                    continue; // reused while we read its id: read it again
                }
                if (same_id and visible(after.tag)) return .{ .found = .{ .slot_index = slot_index, .state = after } };
            }
        }
        probes += 1;
        i = (i + 1) & mask;
    }
    if (epoch_before % 2 == 0 and self.state.epoch.load(.acquire) == epoch_before) return .absent;
    return .unstable;
}

/// States in which an object can be found by its id.
fn visible(tag: Tag) bool {
    return tag != .empty and tag != .reserved;
}

/// Claims a slot for a new `id`; caller holds the allocator lock. The slot stays `reserved`
/// (invisible to lookups) until `publish`.
pub fn reserve(self: *Index, id: *const ObjectId, actor: u32) status.Error!u32 {
    assert(self.state.epoch.load(.monotonic) % 2 == 0); // no move runs beside the lock holder
    const mask = self.buckets.len - 1;
    const hash = hashOf(id);
    var i = self.home(hash);
    var probes: usize = 0;
    while (probes < self.buckets.len) : (probes += 1) {
        const entry = self.buckets[i].load(.monotonic);
        if (entry == 0) break;
        if (entryHash(entry) == hash) {
            const other = entrySlot(entry);
            const tag = State.of(self.slots[other].state.load(.acquire)).tag;
            assert(tag != .reserved); // reserved slots exist only under the lock we hold
            if (tag != .empty and self.idEquals(other, id)) {
                status.setDetail("an object with this id already exists", .{});
                return error.Exists;
            }
        }
        i = (i + 1) & mask;
    }
    assert(probes < self.buckets.len); // at most half full: an empty bucket always ends a probe
    const slot_index = self.allocSlot() orelse {
        status.setDetail("{d} objects, one per {d} bytes of objectStoreMemory (at least {d}); " ++
            "free refs you no longer need, or init with a larger objectStoreMemory", .{ self.slots.len, layout.capacity_bytes_per_slot, layout.slot_count_floor });
        return error.IndexFull;
    };
    const slot = &self.slots[slot_index];
    const old = State.of(slot.state.load(.acquire));
    assert(old.tag == .empty);
    const next = State{ .nested = 0, .generation = old.generation +% 1, .tag = .reserved };
    slot.state.store(next.toWord(), .seq_cst);
    for (&slot.id_words, 0..) |*dst, k| dst.store(std.mem.readInt(u32, id[k * 4 ..][0..4], .little), .monotonic);
    slot.actor.store(actor, .release);
    // The slot is complete before a lookup can reach it.
    self.buckets[i].store(entryOf(hash, slot_index), .release);
    return slot_index;
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

/// Ends a slot's object: its bucket goes (the entries after it move back), then the slot is
/// empty and free for reuse, keeping its generation. Caller holds the allocator lock.
pub fn retire(self: *Index, slot_index: u32) void {
    const slot = &self.slots[slot_index];
    var id: ObjectId = undefined;
    self.readId(slot_index, &id);
    if (self.bucketOf(hashOf(&id), slot_index)) |at| self.removeBucket(at);
    const s = State.of(slot.state.load(.acquire));
    assert(s.tag != .empty);
    slot.actor.store(0, .release);
    slot.state.store(s.with(.empty).toWord(), .seq_cst);
    self.freeSlot(slot_index);
}

/// The bucket holding `slot_index`, whose id hashes to `hash`; null if none does (its creator
/// died before inserting it). Caller holds the allocator lock.
fn bucketOf(self: *const Index, hash: u32, slot_index: u32) ?usize {
    const mask = self.buckets.len - 1;
    const wanted = entryOf(hash, slot_index);
    var i = self.home(hash);
    var probes: usize = 0;
    while (probes < self.buckets.len) : (probes += 1) {
        const entry = self.buckets[i].load(.monotonic);
        if (entry == 0) return null;
        if (entry == wanted) return i;
        i = (i + 1) & mask;
    }
    return null;
}

/// Empties bucket `at`, moving back each later entry of its run that may fill the hole (one
/// whose home is not between the hole and itself). Caller holds the allocator lock.
fn removeBucket(self: *Index, at: usize) void {
    const mask = self.buckets.len - 1;
    var hole = at;
    var j = at;
    var moved = false;
    var steps: usize = 0;
    while (steps < self.buckets.len) : (steps += 1) {
        j = (j + 1) & mask;
        const entry = self.buckets[j].load(.monotonic);
        if (entry == 0) break;
        if (cyclicBetween(hole, self.home(entryHash(entry)), j)) continue; // must stay at or after its home
        if (!moved) {
            moved = true;
            _ = self.state.epoch.fetchAdd(1, .seq_cst); // odd: lookups that miss look again
        }
        // Release: a lookup that sees the moved entry sees the odd epoch too.
        self.buckets[hole].store(entry, .release);
        hole = j;
    }
    assert(steps < self.buckets.len);
    self.buckets[hole].store(0, .release);
    if (moved) _ = self.state.epoch.fetchAdd(1, .seq_cst);
}

/// Whether `k` lies in the cyclic range (from, to].
fn cyclicBetween(from: usize, k: usize, to: usize) bool {
    return if (from <= to) (from < k and k <= to) else (k > from or k <= to);
}

fn allocSlot(self: *Index) ?u32 {
    const st = self.state;
    var w: usize = st.summary_hint;
    while (w < self.slot_summary.len) : (w += 1) {
        const open = self.slot_summary[w];
        if (open == 0) continue;
        const word_index = w * 64 + @ctz(open);
        const bits = self.slot_bits[word_index];
        assert(bits != ~@as(u64, 0));
        const bit: u6 = @intCast(@ctz(~bits));
        self.slot_bits[word_index] = bits | (@as(u64, 1) << bit);
        if (self.slot_bits[word_index] == ~@as(u64, 0)) {
            self.slot_summary[w] &= ~(@as(u64, 1) << @intCast(word_index % 64));
        }
        st.summary_hint = @intCast(w);
        const slot_index: u32 = @intCast(word_index * 64 + bit);
        assert(slot_index < self.slots.len);
        st.in_use += 1;
        if (slot_index >= st.high_water.load(.monotonic)) st.high_water.store(slot_index + 1, .release);
        return slot_index;
    }
    st.summary_hint = @intCast(self.slot_summary.len);
    return null;
}

fn freeSlot(self: *Index, slot_index: u32) void {
    const st = self.state;
    const word_index = slot_index / 64;
    const mask = @as(u64, 1) << @intCast(slot_index % 64);
    assert(self.slot_bits[word_index] & mask != 0);
    self.slot_bits[word_index] &= ~mask;
    self.slot_summary[word_index / 64] |= @as(u64, 1) << @intCast(word_index % 64);
    st.summary_hint = @min(st.summary_hint, word_index / 64);
    assert(st.in_use > 0);
    st.in_use -= 1;
    if (slot_index + 1 == st.high_water.load(.monotonic)) self.lowerHighWater();
}

/// Moves `high_water` down past the free slots at the top.
fn lowerHighWater(self: *Index) void {
    var high_water = self.state.high_water.load(.monotonic);
    var words_left = self.slot_bits.len;
    while (high_water > 0 and words_left > 0) : (words_left -= 1) {
        const word_index = (high_water - 1) / 64;
        const below_bits: u7 = @intCast((high_water - 1) % 64 + 1);
        const below_mask = if (below_bits == 64) ~@as(u64, 0) else (@as(u64, 1) << @intCast(below_bits)) - 1;
        const used = self.slot_bits[word_index] & below_mask;
        if (used != 0) {
            high_water = @intCast(word_index * 64 + 64 - @clz(used));
            break;
        }
        high_water = word_index * 64;
    }
    self.state.high_water.store(high_water, .release);
}

/// Rebuilds the slot bitmap, its summary and the counters from the slots' states: after a
/// process died holding the allocator lock, they are a cache that may be half updated, while
/// each slot's state is the truth. Caller holds the lock.
pub fn rebuildSlotPool(self: *Index) void {
    const scanned = @min(self.state.high_water.load(.monotonic), @as(u32, @intCast(self.slots.len)));
    @memset(self.slot_bits, 0);
    self.markTailUsed();
    var in_use: u32 = 0;
    var high_water: u32 = 0;
    for (self.slots[0..scanned], 0..) |*slot, i| {
        if (State.of(slot.state.load(.acquire)).tag == .empty) continue;
        self.slot_bits[i / 64] |= @as(u64, 1) << @intCast(i % 64);
        in_use += 1;
        high_water = @intCast(i + 1);
    }
    self.recomputeSummary();
    self.state.in_use = in_use;
    self.state.high_water.store(high_water, .release);
}

/// Repairs the bucket table after a process died holding the allocator lock: a deletion cut
/// short leaves the epoch odd and one entry twice; an insertion cut short may leave an entry
/// for a slot it never filled. Every entry stays findable meanwhile. Caller holds the lock and
/// has rebuilt the slot pool; `seen` (one bit per slot) is scratch space sized beforehand, so
/// nothing is allocated under the lock. Returns the entries removed.
pub fn repairBuckets(self: *Index, seen: []u64) u32 {
    assert(seen.len == self.slot_bits.len);
    const epoch = self.state.epoch.load(.monotonic);
    if (epoch % 2 == 1) _ = self.state.epoch.fetchAdd(1, .seq_cst);
    @memset(seen, 0);
    const mask = self.buckets.len - 1;
    // Start right after an empty bucket: moves then only bring entries from ahead of the scan.
    var start: usize = 0;
    while (start < self.buckets.len and self.buckets[start].load(.monotonic) != 0) start += 1;
    assert(start < self.buckets.len);
    var removed: u32 = 0;
    var offset: usize = 1;
    var steps: usize = 0;
    while (offset <= self.buckets.len and steps < 2 * self.buckets.len) : (steps += 1) {
        const i = (start + offset) & mask;
        const entry = self.buckets[i].load(.monotonic);
        if (entry == 0 or self.entryValid(entry, seen)) {
            offset += 1;
            continue;
        }
        self.removeBucket(i); // the next entry of the run may now sit at i: look at i again
        removed += 1;
    }
    return removed;
}

/// An entry for a slot in use, whose id hashes as recorded, seen for the first time.
fn entryValid(self: *const Index, entry: u64, seen: []u64) bool {
    const slot_index = entrySlot(entry);
    if (slot_index >= self.slots.len) return false;
    if (State.of(self.slots[slot_index].state.load(.acquire)).tag == .empty) return false;
    var id: ObjectId = undefined;
    self.readId(slot_index, &id);
    if (hashOf(&id) != entryHash(entry)) return false;
    const bit = @as(u64, 1) << @intCast(slot_index % 64);
    if (seen[slot_index / 64] & bit != 0) return false;
    seen[slot_index / 64] |= bit;
    return true;
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

/// Counts one more containing object for the object found at `found`; false if it is gone.
pub fn addNested(self: *Index, found: Found) bool {
    const s = found.state;
    switch (s.tag) {
        .writing, .sealed, .spilling, .spilled, .restoring, .moving => {},
        else => return false,
    }
    assert(s.nested < std.math.maxInt(u32));
    const next = State{ .nested = s.nested + 1, .generation = s.generation, .tag = s.tag };
    return self.slots[found.slot_index].state.cmpxchgWeak(s.toWord(), next.toWord(), .seq_cst, .monotonic) == null;
}

/// Counts one fewer containing object; the new state, or null if the CAS lost a race (look
/// again) or the count was 0.
pub fn dropNested(self: *Index, found: Found) ?Found {
    const s = found.state;
    if (s.nested == 0) return null;
    const next = State{ .nested = s.nested - 1, .generation = s.generation, .tag = s.tag };
    if (self.slots[found.slot_index].state.cmpxchgWeak(s.toWord(), next.toWord(), .seq_cst, .monotonic) != null) return null;
    return .{ .slot_index = found.slot_index, .state = next };
}

/// Checks the table against the slots (tests and debugging): every entry names a slot in use
/// whose id hashes as recorded, once; every such slot is reachable from its home without
/// crossing an empty bucket; the counters match. Caller holds the lock (or is alone).
pub fn expectConsistent(self: *const Index) !void {
    const mask = self.buckets.len - 1;
    var entries: u32 = 0;
    var highest: u32 = 0;
    for (self.buckets, 0..) |*bucket, i| {
        const entry = bucket.load(.monotonic);
        if (entry == 0) continue;
        entries += 1;
        const slot_index = entrySlot(entry);
        if (State.of(self.slots[slot_index].state.load(.monotonic)).tag == .empty) return error.EntryForEmptySlot;
        var id: ObjectId = undefined;
        self.readId(slot_index, &id);
        if (hashOf(&id) != entryHash(entry)) return error.EntryHashWrong;
        var k = self.home(entryHash(entry));
        while (k != i) : (k = (k + 1) & mask) {
            if (self.buckets[k].load(.monotonic) == 0) return error.EntryUnreachable;
        }
        highest = @max(highest, slot_index + 1);
    }
    var in_use: u32 = 0;
    for (self.slots, 0..) |*slot, i| {
        const used = State.of(slot.state.load(.monotonic)).tag != .empty;
        const bit_set = self.slot_bits[i / 64] & (@as(u64, 1) << @intCast(i % 64)) != 0;
        if (used != bit_set) return error.SlotBitWrong;
        if (used) in_use += 1;
        if (used and i >= self.highWater()) return error.AboveHighWater;
    }
    if (in_use != self.state.in_use) return error.InUseCountWrong;
    if (entries > in_use) return error.TooManyEntries;
    if (self.state.epoch.load(.monotonic) % 2 != 0) return error.EpochOdd;
}

// ---------------------------------------------------------------- tests

fn TestIndex(comptime slot_count: usize) type {
    return struct {
        slots: [slot_count]layout.Slot = undefined,
        extras: [slot_count]layout.SlotExtra = undefined,
        buckets: [2 * slot_count]Atomic(u64) = undefined,
        bits: [(slot_count + 63) / 64]u64 = undefined,
        summary: [((slot_count + 63) / 64 + 63) / 64]u64 = undefined,
        state: layout.IndexState = undefined,

        fn index(self: *@This()) Index {
            @memset(std.mem.sliceAsBytes(&self.slots), 0);
            @memset(std.mem.sliceAsBytes(&self.extras), 0);
            @memset(std.mem.sliceAsBytes(&self.buckets), 0);
            var result = Index{
                .slots = &self.slots,
                .extras = &self.extras,
                .buckets = &self.buckets,
                .slot_bits = &self.bits,
                .slot_summary = &self.summary,
                .state = &self.state,
            };
            result.initEmpty();
            return result;
        }
    };
}

fn testId(k: u32) ObjectId {
    var id: ObjectId = @splat(0);
    std.mem.writeInt(u32, id[0..4], k, .little);
    return id;
}

fn find(index: *const Index, id: *const ObjectId) ?Found {
    return switch (index.lookup(id)) {
        .found => |f| f,
        .absent => null,
        .unstable => unreachable, // single-threaded
    };
}

fn insert(index: *Index, k: u32) !u32 {
    const slot_index = try index.reserve(&testId(k), 1);
    index.publish(slot_index, .sealed);
    return slot_index;
}

test "reserve, publish, find, duplicates, retire and slot reuse" {
    var t = TestIndex(64){};
    var index = t.index();
    const a = testId(1);
    try std.testing.expect(find(&index, &a) == null);
    const ia = try index.reserve(&a, 1);
    try std.testing.expect(find(&index, &a) == null); // reserved is invisible
    index.publish(ia, .writing);
    try std.testing.expectEqual(ia, find(&index, &a).?.slot_index);
    try std.testing.expectError(error.Exists, index.reserve(&a, 1));
    const ib = try insert(&index, 2);
    const generation = State.of(t.slots[ia].state.load(.monotonic)).generation;
    index.retire(ia);
    try std.testing.expect(find(&index, &a) == null);
    try std.testing.expectEqual(ib, find(&index, &testId(2)).?.slot_index);
    // The lowest free slot is reused, with a new generation.
    const ia2 = try index.reserve(&a, 1);
    try std.testing.expectEqual(ia, ia2);
    try std.testing.expect(State.of(t.slots[ia2].state.load(.monotonic)).generation != generation);
    index.publish(ia2, .sealed);
    try index.expectConsistent();
}

test "slots are handed out lowest first and high water follows the top slot in use" {
    var t = TestIndex(256){};
    var index = t.index();
    var placed: [200]u32 = undefined;
    for (&placed, 0..) |*p, k| {
        p.* = try insert(&index, @intCast(k));
        try std.testing.expectEqual(@as(u32, @intCast(k)), p.*);
    }
    try std.testing.expectEqual(@as(u32, 200), index.highWater());
    index.retire(placed[10]);
    try std.testing.expectEqual(@as(u32, 10), try insert(&index, 1000));
    var k: usize = 199;
    while (k >= 100) : (k -= 1) index.retire(placed[k]);
    try std.testing.expectEqual(@as(u32, 100), index.highWater());
    k = 99;
    while (k > 0) : (k -= 1) if (k != 10) index.retire(placed[k]);
    try std.testing.expectEqual(@as(u32, 11), index.highWater()); // 0 and 10 (id 1000) are in use
    try index.expectConsistent();
}

test "deletions shift entries back: every survivor stays findable, no tombstones pile up" {
    // 64 slots in 128 buckets: long runs, so most deletions move entries.
    var t = TestIndex(64){};
    var index = t.index();
    var prng = std.Random.DefaultPrng.init(42);
    const random = prng.random();
    var live: [64]?u32 = @splat(null); // live[slot] = key
    var next_key: u32 = 0;
    var cycle: u32 = 0;
    var probes_total: u64 = 0;
    var lookups: u64 = 0;
    while (cycle < 200_000) : (cycle += 1) {
        const slot_pick = random.uintLessThan(usize, 64);
        if (live[slot_pick]) |key| {
            const found = find(&index, &testId(key)).?;
            try std.testing.expectEqual(@as(u32, @intCast(slot_pick)), found.slot_index);
            index.retire(found.slot_index);
            live[slot_pick] = null;
        } else if (index.state.in_use < 56) {
            const slot_index = try insert(&index, next_key);
            try std.testing.expect(live[slot_index] == null);
            live[slot_index] = next_key;
            next_key += 1;
        }
        if (cycle % 1000 == 0) {
            try index.expectConsistent();
            for (live) |maybe| if (maybe) |key| try std.testing.expect(find(&index, &testId(key)) != null);
            // A miss stops at the first empty bucket: its probe length depends on the live
            // objects only, not on the 200,000 that came and went.
            probes_total += index.missProbeLength(&testId(0x7fff_0000 + cycle));
            lookups += 1;
        }
    }
    try std.testing.expect(probes_total / lookups < 40);
}

test "an index once full, then emptied, is as empty as a fresh one: every bucket, high water 0" {
    var t = TestIndex(64){};
    var index = t.index();
    var prng = std.Random.DefaultPrng.init(7);
    var order: [64]u32 = undefined;
    var round: u32 = 0;
    while (round < 50) : (round += 1) {
        for (&order, 0..) |*o, k| o.* = try insert(&index, round * 64 + @as(u32, @intCast(k)));
        try std.testing.expectError(error.IndexFull, index.reserve(&testId(0xffff), 1));
        prng.random().shuffle(u32, &order);
        for (order) |slot_index| index.retire(slot_index);
        for (&t.buckets) |*bucket| try std.testing.expectEqual(@as(u64, 0), bucket.load(.monotonic));
        try std.testing.expectEqual(@as(u32, 0), index.highWater());
        try index.expectConsistent();
    }
}

fn missProbeLength(self: *const Index, id: *const ObjectId) u64 {
    const mask = self.buckets.len - 1;
    var i = self.home(hashOf(id));
    var probes: u64 = 1;
    while (self.buckets[i].load(.monotonic) != 0) : (probes += 1) i = (i + 1) & mask;
    return probes;
}

test "a full index is an error that names the limit, not a hang" {
    var t = TestIndex(64){};
    var index = t.index();
    var k: u32 = 0;
    while (k < 64) : (k += 1) _ = try insert(&index, k);
    try std.testing.expectError(error.IndexFull, index.reserve(&testId(999), 1));
    try std.testing.expect(std.mem.startsWith(u8, status.detail(), "64 objects, one per 1024 bytes of objectStoreMemory"));
    try std.testing.expect(find(&index, &testId(999)) == null);
    try std.testing.expect(find(&index, &testId(63)) != null);
    index.retire(find(&index, &testId(5)).?.slot_index);
    _ = try insert(&index, 999);
    try index.expectConsistent();
}

test "a lookup beside a move reports unstable, never a false absence" {
    var t = TestIndex(64){};
    var index = t.index();
    var k: u32 = 0;
    while (k < 40) : (k += 1) _ = try insert(&index, k);
    // A deletion that died mid-move leaves the epoch odd: misses are unstable, hits still found.
    _ = index.state.epoch.fetchAdd(1, .monotonic);
    try std.testing.expect(index.lookup(&testId(7)) == .found);
    try std.testing.expect(index.lookup(&testId(500)) == .unstable);
    _ = index.state.epoch.fetchAdd(1, .monotonic);
    try std.testing.expect(index.lookup(&testId(500)) == .absent);
}

test "repair after a dead lock holder: duplicate and stray entries go, the epoch is even" {
    var t = TestIndex(64){};
    var index = t.index();
    var k: u32 = 0;
    while (k < 30) : (k += 1) _ = try insert(&index, k);
    // A move cut short: an entry copied back into a hole but not yet cleared at its old place,
    // and the epoch left odd.
    var hole: usize = 0;
    while (t.buckets[hole].load(.monotonic) != 0 or t.buckets[(hole + t.buckets.len - 1) % t.buckets.len].load(.monotonic) == 0) hole += 1;
    const copied = t.buckets[(hole + t.buckets.len - 1) % t.buckets.len].load(.monotonic);
    t.buckets[hole].store(copied, .monotonic);
    _ = index.state.epoch.fetchAdd(1, .monotonic);
    // An insertion cut short: a slot claimed in the bitmap, never filled.
    _ = index.allocSlot();
    try std.testing.expectError(error.SlotBitWrong, index.expectConsistent());
    index.rebuildSlotPool();
    var seen: [t.bits.len]u64 = undefined;
    try std.testing.expectEqual(@as(u32, 1), index.repairBuckets(&seen));
    try index.expectConsistent();
    k = 0;
    while (k < 30) : (k += 1) try std.testing.expect(find(&index, &testId(k)) != null);
    try std.testing.expectEqual(@as(u32, 30), (try insert(&index, 100)));
}

test "nested counts go up and down and stop at gone objects" {
    var t = TestIndex(64){};
    var index = t.index();
    const a = testId(7);
    _ = try insert(&index, 7);
    try std.testing.expect(index.addNested(find(&index, &a).?));
    try std.testing.expect(index.addNested(find(&index, &a).?));
    try std.testing.expectEqual(@as(u32, 1), index.dropNested(find(&index, &a).?).?.state.nested);
    try std.testing.expectEqual(@as(u32, 0), index.dropNested(find(&index, &a).?).?.state.nested);
    try std.testing.expect(index.dropNested(find(&index, &a).?) == null);
}
