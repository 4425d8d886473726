//! The shared segment's layout: every structure that lives in shared memory, and where.
//!
//!   | header (4 KiB) | clients | spill files | bitmap | (pad) | buckets | slot bits | (pad) |
//!   | slots | slot extras | (pad) | data |
//!
//! Every section starts at an offset computed from (capacity, slot count) alone, so each process
//! derives the same layout from the header and nothing in shared memory holds a pointer. The
//! sections from `buckets` on are the object index; their pages are touched only as objects use
//! them (slots are handed out lowest first), never faulted in ahead.

const std = @import("std");
const assert = std.debug.assert;
const Atomic = std.atomic.Value;

pub const magic: u64 = 0x31_45_52_4f_54_53_4a_4f; // "OJSTORE1", little-endian
pub const abi_version: u32 = 10;
pub const id_size_bytes = 28;
pub const block_size_bytes = 64;
pub const page_size_bytes = 4096;
/// Holders of an object are tracked as one bit per client, so crash cleanup is exact.
pub const client_count_max = 64;
pub const spill_file_count_max = 4096;
pub const spill_dir_size_max = 1024;
pub const name_size_max = 200;
/// Index slots: one per `capacity_bytes_per_slot` of capacity, at least `slot_count_floor` (a
/// small store of small objects) unless the store has fewer 64-byte blocks, at most
/// `slot_count_max`. A slot costs 128 B of shared memory once used, and 8 B of bucket always.
pub const capacity_bytes_per_slot = 1024;
pub const slot_count_floor = 1 << 18;
pub const slot_count_min = 64;
pub const slot_count_max = 1 << 28;

pub const ObjectId = [id_size_bytes]u8;

/// Slot states. Transitions (all by CAS on `Slot.state`):
///   empty → reserved → writing → sealed ⇄ spilling → spilled ⇄ restoring → sealed
///   writing → empty (abort);  sealed/spilled → deleting → empty (or back to sealed/spilled)
///   sealed → moving → sealed (compaction)
/// A slot is in use from `reserved` until it is `empty` again.
pub const Tag = enum(u4) {
    empty = 0,
    reserved = 1,
    writing = 2,
    sealed = 3,
    spilling = 4,
    spilled = 5,
    restoring = 6,
    deleting = 7,
    moving = 9,
};

/// `Slot.state` packs tag, generation and nested-reference count into one word so that a
/// single CAS moves the state and proves no one re-used the slot (the generation) and no
/// containing object still needs it (the nested count).
pub const State = packed struct(u64) {
    nested: u32,
    generation: u28,
    tag: Tag,

    pub fn of(word: u64) State {
        return @bitCast(word);
    }
    pub fn toWord(self: State) u64 {
        return @bitCast(self);
    }
    pub fn with(self: State, tag: Tag) State {
        return .{ .nested = self.nested, .generation = self.generation, .tag = tag };
    }
};

/// The index entry of one object; 64 bytes, one cache line.
pub const Slot = extern struct {
    state: Atomic(u64),
    /// Bit c set: client c holds at least one reference.
    ref_holders: Atomic(u64),
    /// Bit c set: client c holds at least one pin (a live read-only view).
    pin_holders: Atomic(u64),
    /// The id as seven words so that lock-free readers copy it without torn bytes.
    id_words: [7]Atomic(u32),
    /// The client doing the current transient transition (reserved, writing, deleting,
    /// spilling, restoring); a janitor finishes or undoes it if that client died.
    actor: Atomic(u32),
    reserved: [8]u8,
};

/// Cold per-object fields, parallel to `Slot`, written only by the slot's current actor.
pub const SlotExtra = extern struct {
    extent_offset_bytes: u64,
    extent_size_bytes: u64,
    data_size_bytes: u64,
    spill_offset_bytes: u64,
    spill_file: u32,
    child_count: u32,
    lru_tick: Atomic(u32),
    /// 1: a secondary copy, pulled from another node that holds the object. Memory pressure
    /// evicts it before any primary, with nothing written: its bytes come back by a pull.
    copy_elsewhere: u8,
    reserved: [19]u8,

    /// Of a spilled (or restoring) slot: a copy evicted without a spill file, whose bytes are on
    /// another node only.
    pub fn isEvictedCopy(extra: *const SlotExtra) bool {
        return extra.spill_file == 0 and extra.copy_elsewhere != 0;
    }
};

pub const ClientState = enum(u8) { free = 0, alive = 1, registering = 2, reclaiming = 3 };

/// A client entry's state, the process acting on it and, while reclaiming, who reclaims it:
/// one word, so that taking an entry over is a single CAS that also names the taker. Whatever
/// state a process is killed in, the entry names it, and its death can be seen.
pub const ClientWord = packed struct(u64) {
    state: ClientState,
    /// Client index + 1 of the reclaiming process (the entry's own index when its adopter
    /// reclaims what the dead one before it held).
    reclaimer: u8 = 0,
    /// Bumped each time the entry passes to another process (registered, or adopted from a
    /// dead one). The entry's index is reused, its incarnation is not: a process that found
    /// the entry's owner dead can act (its CAS) only while that owner's incarnation is there,
    /// never on the live process that has the entry now.
    incarnation: u16 = 0,
    /// The process acting on the entry: its registrant, its owner, or its reclaimer (the
    /// adopter, reclaiming its own entry, or the process that claimed a dead one's); 0 when free.
    pid: u32 = 0,

    pub fn of(word: u64) ClientWord {
        return @bitCast(word);
    }
    pub fn toWord(self: ClientWord) u64 {
        return @bitCast(self);
    }
};

/// The allocator lock's word (`Header.alloc_lock`, 0 when free): the holder's client index + 1
/// and its entry's incarnation, so that a taker who found the holder dead cannot take the lock
/// from the process that has the holder's entry now.
pub const LockWord = packed struct(u32) {
    holder: u8,
    incarnation: u16,
    reserved: u8 = 0,

    pub fn of(word: u32) LockWord {
        return @bitCast(word);
    }
    pub fn toWord(self: LockWord) u32 {
        return @bitCast(self);
    }
};

pub const Client = extern struct {
    /// A `ClientWord`.
    word: Atomic(u64),
    /// The start time of the process in the word (`sys.processStartTime`), so that pid reuse
    /// cannot fool a liveness check; written by the owner or adopter while the entry is
    /// `registering`, so only meaningful for an `alive` entry or one its adopter reclaims.
    start_time: u64,
    reserved: [48]u8,
};

/// One fused spill file; deleted when its last object is freed or restored.
pub const SpillFile = extern struct {
    live_objects: Atomic(u32),
    /// A FileState.
    state: Atomic(u32),
    size_bytes: u64,
    /// Names the file: `<spill dir>/objstore-<store>-<serial>.spill`, and its remote copy.
    serial: u64,
    /// The client (index + 1) uploading the file or deleting its remote copy; 0 for none.
    actor: Atomic(u32),
    reserved: [4]u8,
};

/// Where a spill file is. Remote storage (S3) is driven from TypeScript: a process claims a
/// `local` file, copies it, and makes it `remote` (the local file is then deleted); a remote
/// copy whose objects are all gone waits in `remote_unused` until a process deletes it.
pub const FileState = enum(u32) {
    free = 0,
    writing = 1,
    local = 2,
    uploading = 3,
    remote = 4,
    remote_unused = 5,
    remote_deleting = 6,
    /// Its objects went away while it was uploading: the uploader finishes it.
    upload_orphaned = 7,
};

/// The object index's shared counters (see Index.zig). Written under the allocator lock,
/// except `epoch`, which lock-free lookups also read.
pub const IndexState = extern struct {
    /// Odd while a deletion moves bucket entries back; a lookup that missed retries if it changed.
    epoch: Atomic(u64),
    /// One past the highest slot in use: scans of the slots stop here.
    high_water: Atomic(u32),
    /// Slots in use.
    in_use: u32,
    /// The lowest word of the slot summary that may have a free slot (every word below is full).
    summary_hint: u32,
    reserved: [12]u8,
};

pub const Header = extern struct {
    magic: u64,
    abi_version: u32,
    layout_hash: u32,
    capacity_bytes: u64,
    segment_size_bytes: u64,
    slot_count: u32,
    client_count: u32,
    clients_offset: u64,
    spill_files_offset: u64,
    bitmap_offset: u64,
    bitmap_words: u64,
    buckets_offset: u64,
    bucket_count: u64,
    slot_bits_offset: u64,
    slot_summary_offset: u64,
    slots_offset: u64,
    extras_offset: u64,
    data_offset: u64,
    creator_uid: u32,
    /// 1 once the creator finished initialising the segment; attachers wait for it.
    ready: Atomic(u32),
    /// A `LockWord`: who holds the allocator lock; 0 when free.
    alloc_lock: Atomic(u32),
    alloc_lock_waiters: Atomic(u32),
    /// Bumped on every seal, abort and delete; a futex that readers waiting for an object
    /// sleep on.
    seal_sequence: Atomic(u32),
    seal_waiters: Atomic(u32),
    lru_clock: Atomic(u32),
    spill_file_next: Atomic(u32),
    index: IndexState,
    used_bytes: Atomic(u64),
    /// Totals since the store was made, for rates (the spilling or restoring process counts
    /// what it completed): bytes and objects restored, and bytes and objects that left memory
    /// for a spill file (written to one, or evicted with their copy already in one).
    restored_bytes: Atomic(u64),
    restored_objects: Atomic(u64),
    spilled_total_bytes: Atomic(u64),
    spilled_total_objects: Atomic(u64),
    /// Windows cleared by compaction (informational).
    compactions: Atomic(u64),
    alloc_cursor_block: u64,
    /// Bitmap words below this were allocated before or prefaulted (BlockBitmap: the
    /// allocator fills them before it touches new memory).
    alloc_touched_end_word: u64,
    spill_dir_size_bytes: u32,
    /// 1 = spilling disabled for this store.
    spill_disabled: u32,
    spill_dir: [spill_dir_size_max]u8,
    name_size_bytes: u32,
    name: [name_size_max]u8,
};

comptime {
    assert(@sizeOf(Slot) == 64);
    assert(@sizeOf(SlotExtra) == 64);
    assert(@sizeOf(Client) == 64);
    assert(@sizeOf(SpillFile) == 32);
    assert(@sizeOf(IndexState) == 32);
    assert(@sizeOf(Header) <= page_size_bytes);
}

/// A hash of the shapes above, so a process built from other sources refuses to attach.
pub const layout_hash: u32 = blk: {
    // The two words' fields too: a library whose client entries or lock carry no incarnation
    // (or whose client word names no pid) must not share a store with one whose do.
    const shape = std.fmt.comptimePrint("{d}/{d}/{d}/{d}/{d}/{d}/{d}/{d}/{d}/{d}/{d}", .{
        @sizeOf(Slot),                 @sizeOf(SlotExtra), @sizeOf(Client),
        @sizeOf(Header),               @offsetOf(Header, "spill_dir"), client_count_max,
        @offsetOf(Header, "index"),    @bitOffsetOf(ClientWord, "incarnation"), @bitOffsetOf(LockWord, "incarnation"),
        @bitOffsetOf(ClientWord, "pid"),     @offsetOf(SlotExtra, "copy_elsewhere"),
    });
    break :blk @truncate(std.hash.Wyhash.hash(0, shape));
};

pub const Sections = struct {
    clients_offset: u64,
    spill_files_offset: u64,
    bitmap_offset: u64,
    bitmap_words: u64,
    buckets_offset: u64,
    bucket_count: u64,
    slot_bits_offset: u64,
    slot_summary_offset: u64,
    slots_offset: u64,
    extras_offset: u64,
    data_offset: u64,
    segment_size_bytes: u64,
};

/// Buckets of the index's hash table: a power of two, at least twice the slots, so that the
/// table is at most half full.
pub fn bucketCount(slot_count: u32) u64 {
    return std.math.ceilPowerOfTwoAssert(u64, 2 * @as(u64, slot_count));
}

/// Words of the slot-in-use bitmap, and of its summary (one bit per bitmap word).
pub fn slotBitsWords(slot_count: u32) u64 {
    return std.math.divCeil(u64, slot_count, 64) catch unreachable;
}

pub fn slotSummaryWords(slot_count: u32) u64 {
    return std.math.divCeil(u64, slotBitsWords(slot_count), 64) catch unreachable;
}

/// Section offsets for a store of `capacity_bytes` with `slot_count` index slots.
pub fn sections(capacity_bytes: u64, slot_count: u32) Sections {
    assert(capacity_bytes % page_size_bytes == 0);
    assert(slot_count >= slot_count_min and slot_count <= slot_count_max);
    const blocks = capacity_bytes / block_size_bytes;
    const bitmap_words = std.mem.alignForward(u64, blocks, 64) / 64;
    var s: Sections = undefined;
    s.clients_offset = page_size_bytes;
    s.spill_files_offset = s.clients_offset + client_count_max * @sizeOf(Client);
    s.bitmap_offset = s.spill_files_offset + spill_file_count_max * @sizeOf(SpillFile);
    s.bitmap_words = bitmap_words;
    s.buckets_offset = std.mem.alignForward(u64, s.bitmap_offset + bitmap_words * 8, page_size_bytes);
    s.bucket_count = bucketCount(slot_count);
    s.slot_bits_offset = s.buckets_offset + s.bucket_count * 8;
    s.slot_summary_offset = s.slot_bits_offset + slotBitsWords(slot_count) * 8;
    s.slots_offset = std.mem.alignForward(u64, s.slot_summary_offset + slotSummaryWords(slot_count) * 8, page_size_bytes);
    s.extras_offset = s.slots_offset + @as(u64, slot_count) * @sizeOf(Slot);
    s.data_offset = std.mem.alignForward(u64, s.extras_offset + @as(u64, slot_count) * @sizeOf(SlotExtra), page_size_bytes);
    s.segment_size_bytes = s.data_offset + capacity_bytes;
    assert(s.data_offset % page_size_bytes == 0);
    return s;
}

/// Index slots for a store of `capacity_bytes` (see `capacity_bytes_per_slot`).
pub fn defaultSlotCount(capacity_bytes: u64) u32 {
    const blocks = capacity_bytes / block_size_bytes;
    const floor = std.math.clamp(blocks, slot_count_min, slot_count_floor);
    return @intCast(std.math.clamp(capacity_bytes / capacity_bytes_per_slot, floor, slot_count_max));
}

test "sections are ordered, aligned and sized" {
    const s = sections(64 * 1024 * 1024, 4096);
    try std.testing.expect(s.clients_offset < s.spill_files_offset);
    try std.testing.expect(s.spill_files_offset < s.bitmap_offset);
    try std.testing.expect(s.bitmap_offset + s.bitmap_words * 8 <= s.buckets_offset);
    try std.testing.expect(s.buckets_offset + s.bucket_count * 8 <= s.slot_bits_offset);
    try std.testing.expect(s.slot_summary_offset + slotSummaryWords(4096) * 8 <= s.slots_offset);
    try std.testing.expectEqual(s.slots_offset + 4096 * 64, s.extras_offset);
    try std.testing.expect(s.extras_offset + 4096 * 64 <= s.data_offset);
    try std.testing.expectEqual(@as(u64, 8192), s.bucket_count);
    try std.testing.expectEqual(@as(u64, 0), s.buckets_offset % page_size_bytes);
    try std.testing.expectEqual(@as(u64, 0), s.slots_offset % page_size_bytes);
    try std.testing.expectEqual(s.data_offset + 64 * 1024 * 1024, s.segment_size_bytes);
    try std.testing.expectEqual(@as(u64, 64 * 1024 * 1024 / 64 / 64), s.bitmap_words);
}

test "State packs tag above generation above nested" {
    const st = State{ .nested = 7, .generation = 3, .tag = .sealed };
    try std.testing.expectEqual(st, State.of(st.toWord()));
    try std.testing.expectEqual(@as(u64, 7), st.toWord() & 0xffff_ffff);
    try std.testing.expectEqual(Tag.sealed, State.of(st.toWord()).tag);
}

test "defaultSlotCount: one slot per KiB, a floor for small stores, never more than blocks" {
    const GiB: u64 = 1 << 30;
    try std.testing.expectEqual(@as(u32, 64), defaultSlotCount(4096));
    try std.testing.expectEqual(@as(u32, 16 * 1024), defaultSlotCount(1 << 20)); // 1 MiB: every block
    try std.testing.expectEqual(@as(u32, slot_count_floor), defaultSlotCount(64 << 20));
    try std.testing.expectEqual(@as(u32, 1 << 20), defaultSlotCount(GiB));
    // The default store of a 23 GiB machine (30 %): more than 4 M objects.
    try std.testing.expect(defaultSlotCount(7 * GiB) >= 4 << 20);
    try std.testing.expectEqual(@as(u32, slot_count_max), defaultSlotCount(1 << 50));
    // Bucket tables stay at most half full.
    for ([_]u32{ 64, 100, 4096, 1 << 20, slot_count_max }) |n| try std.testing.expect(bucketCount(n) >= 2 * @as(u64, n));
}
