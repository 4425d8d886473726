//! One process's attachment to a named store, and what it does with objects: the lifecycle
//! (`create` → write → `seal` → `get` (pin) / `release` → last holder gone → deleted) and the
//! private per-slot counts of the references and pins this process holds. The parts it stands
//! on have files of their own: the mapped segment (Segment.zig), the client table and the
//! allocator lock (Clients.zig), the spill-file table (SpillFiles.zig), the compactor.
//! Spilling acts on a store from above (Spiller.zig).
//!
//! Lookups and pins are lock-free (CAS on `Slot.state`); only allocation, freeing and
//! crash recovery take the allocator lock, whose holder is recorded so a death is detected.

const std = @import("std");
const assert = std.debug.assert;
const layout = @import("layout.zig");
const sys = @import("sys.zig");
const status = @import("status.zig");
const shm_names = @import("shm_names.zig");
const Index = @import("Index.zig");
const Segment = @import("Segment.zig");
const Clients = @import("Clients.zig");
const SpillFiles = @import("SpillFiles.zig");
const Compactor = @import("Compactor.zig");

const Store = @This();
const Error = status.Error;
const Tag = layout.Tag;
const State = layout.State;
const ObjectId = layout.ObjectId;

pub const OpenOptions = Segment.OpenOptions;
pub const prefault_data_max_bytes = Segment.prefault_data_max_bytes;

/// This process's holdings of one slot; only this process reads or writes it.
const Count = struct { refs: u32 = 0, pins: u32 = 0 };

segment: Segment,
/// The mapping, as in `segment`: where a `Region`'s offset counts from, and its size.
base: [*]align(layout.page_size_bytes) u8,
segment_size_bytes: usize,
counts: []Count,
/// True if this process created the segment (its settings, like the spill directory, are ours to make).
created: bool,

pub fn open(name: []const u8, options: OpenOptions) Error!*Store {
    try shm_names.validateStoreName(name);
    const self = std.heap.page_allocator.create(Store) catch return error.System;
    errdefer std.heap.page_allocator.destroy(self);
    self.* = undefined;
    const created = try self.segment.map(name, options);
    errdefer self.segment.unmapAndClose(true);
    self.base = self.segment.base;
    self.segment_size_bytes = self.segment.size_bytes;
    self.counts = std.heap.page_allocator.alloc(Count, self.segment.index.slots.len) catch {
        self.segment.unlockFile();
        return error.System;
    };
    @memset(self.counts, .{});
    errdefer std.heap.page_allocator.free(self.counts);
    // Registered under the segment's flock: the last process leaving removes the segment
    // holding it exclusively, so it either sees this process registered or unlinked the
    // segment before this process locked it (and Segment.map then tried again). Nothing
    // that waits is done under it (invariant 14): an adopted entry is reclaimed after.
    const adopted = register: {
        defer self.segment.unlockFile();
        break :register try Clients.register(&self.segment);
    };
    if (adopted) {
        Clients.reclaimAdopted(&self.segment);
        self.sweepOrphans();
    }
    self.created = created;
    // Fault the header, client table and allocator bitmap in now rather than one miss at a
    // time; the data region too when this process created the store and asked for it. Not the
    // index: its pages are touched as objects use them.
    if (options.threads) self.segment.startPrefault(created and options.prefault);
    return self;
}

pub fn storeName(self: *const Store) []const u8 {
    return self.segment.storeName();
}

/// Reclaims every dead process's references, pins and unfinished objects, and deletes what no
/// one holds any more; returns how many processes were reclaimed.
pub fn maintain(self: *Store) u32 {
    const reclaimed = Clients.reclaimDead(&self.segment);
    if (reclaimed > 0) self.sweepOrphans();
    return reclaimed;
}

/// Deletes objects nobody holds: left behind when a holder died.
fn sweepOrphans(self: *Store) void {
    for (self.segment.index.usedSlots(), 0..) |*slot, i| {
        const s = State.of(slot.state.load(.acquire));
        if (s.tag != .sealed and s.tag != .spilled) continue;
        self.tryDelete(@intCast(i), s.generation, 0);
    }
}

/// The allocator lock (Clients.zig): for callers that read or change what it guards.
pub fn lock(self: *Store) void {
    Clients.lock(&self.segment);
}

pub fn unlock(self: *Store) void {
    Clients.unlock(&self.segment);
}

pub fn attachedProcesses(self: *Store) u32 {
    return Clients.attachedProcesses(&self.segment);
}

pub fn attachedCount(self: *Store) u32 {
    return Clients.attachedCount(&self.segment);
}

/// How many living processes use the store `name`, read without attaching (Clients.countLive).
pub const countLiveClients = Clients.countLive;

// ---------------------------------------------------------------- objects

pub const Region = struct { offset_bytes: u64, size_bytes: u64 };

/// Creates an unsealed object of `size_bytes` that holds `children` alive until it is
/// deleted; returns where to write its data. This process holds one reference to it.
pub fn create(self: *Store, id: *const ObjectId, size_bytes: u64, children: []const ObjectId) Error!Region {
    const children_size_bytes = std.mem.alignForward(u64, children.len * layout.id_size_bytes, layout.block_size_bytes);
    const extent_size_bytes = @max(layout.block_size_bytes, children_size_bytes + std.mem.alignForward(u64, size_bytes, layout.block_size_bytes));
    if (extent_size_bytes > self.segment.header.capacity_bytes) {
        status.setDetail("object of {d} bytes is larger than the store's capacity of {d} bytes", .{ size_bytes, self.segment.header.capacity_bytes });
        return error.StoreFull;
    }
    try self.addNested(children);
    errdefer self.dropNested(children, 0);

    var compactor = Compactor{ .segment = &self.segment };
    // Moved objects may have lost their last holder while moving: check once unlocked.
    defer for (compactor.moved[0..compactor.moved_count]) |moved| {
        self.tryDelete(moved, State.of(self.segment.index.slots[moved].state.load(.acquire)).generation, 0);
    };
    self.lock();
    defer self.unlock();
    const slot_index = try self.segment.index.reserve(id, self.segment.actorId());
    const block_count = extent_size_bytes / layout.block_size_bytes;
    const block = self.segment.bitmap.alloc(block_count) orelse blk: {
        if (compactor.makeRoom(block_count)) {
            if (self.segment.bitmap.alloc(block_count)) |b| break :blk b;
        }
        self.segment.index.release(slot_index);
        status.setDetail("no room for an object of {d} bytes: {d} of {d} bytes in use", .{ size_bytes, self.segment.header.used_bytes.load(.monotonic), self.segment.header.capacity_bytes });
        return error.StoreFull;
    };
    const extra = &self.segment.index.extras[slot_index];
    // A slot is reused only once no process holds it, and this one's counts went with it.
    assert(self.counts[slot_index].refs == 0 and self.counts[slot_index].pins == 0);
    assert((block + block_count) * layout.block_size_bytes <= self.segment.header.capacity_bytes);
    extra.* = std.mem.zeroes(layout.SlotExtra);
    extra.extent_offset_bytes = block * layout.block_size_bytes;
    extra.extent_size_bytes = extent_size_bytes;
    extra.data_size_bytes = size_bytes;
    extra.child_count = @intCast(children.len);
    extra.lru_tick.store(self.segment.header.lru_clock.fetchAdd(1, .monotonic), .monotonic);
    const children_at: [*]u8 = self.segment.base + self.segment.header.data_offset + extra.extent_offset_bytes;
    @memcpy(children_at[0 .. children.len * layout.id_size_bytes], std.mem.sliceAsBytes(children));

    const slot = &self.segment.index.slots[slot_index];
    slot.ref_holders.store(self.segment.clientBit(), .seq_cst);
    slot.pin_holders.store(0, .seq_cst);
    self.counts[slot_index] = .{ .refs = 1, .pins = 0 };
    assert(slot.actor.load(.monotonic) == self.segment.actorId()); // the creator writes it
    self.segment.index.publish(slot_index, .writing);
    _ = self.segment.header.used_bytes.fetchAdd(extent_size_bytes, .monotonic);
    return self.regionOf(extra);
}

/// Where an object's data lies in the segment: its extent, past the ids of its children.
fn regionOf(self: *const Store, extra: *const layout.SlotExtra) Region {
    const children_size_bytes = std.mem.alignForward(u64, @as(u64, extra.child_count) * layout.id_size_bytes, layout.block_size_bytes);
    assert(extra.extent_size_bytes >= children_size_bytes + extra.data_size_bytes);
    assert(extra.extent_offset_bytes + extra.extent_size_bytes <= self.segment.header.capacity_bytes);
    return .{ .offset_bytes = self.segment.header.data_offset + extra.extent_offset_bytes + children_size_bytes, .size_bytes = extra.data_size_bytes };
}

fn addNested(self: *Store, children: []const ObjectId) Error!void {
    for (children, 0..) |*child, i| {
        if (!self.addNestedOne(child)) {
            self.dropNested(children[0..i], 0);
            status.setDetail("a contained object is not in the store", .{});
            return error.Absent;
        }
    }
}

/// Counts one more containing object for `id`; false if the object is gone.
fn addNestedOne(self: *Store, id: *const ObjectId) bool {
    var attempt: u32 = 0;
    while (attempt < 1000) : (attempt += 1) {
        const found = self.find(id) orelse return false;
        switch (found.state.tag) {
            .writing, .sealed, .spilling, .spilled, .restoring, .moving => {},
            else => return false,
        }
        if (self.segment.index.addNested(found)) return true;
    }
    return false;
}

fn dropNested(self: *Store, children: []const ObjectId, depth: u32) void {
    for (children) |*child| {
        const found = self.dropNestedOne(child) orelse continue;
        if (found.state.nested == 0) self.tryDelete(found.slot_index, found.state.generation, depth + 1);
    }
}

/// Counts one fewer containing object for `id`; its new state, or null if not found.
fn dropNestedOne(self: *Store, id: *const ObjectId) ?Index.Found {
    var attempt: u32 = 0;
    while (attempt < 1000) : (attempt += 1) {
        const found = self.find(id) orelse return null;
        if (found.state.nested == 0) return null;
        if (self.segment.index.dropNested(found)) |dropped| return dropped;
    }
    return null;
}

/// Lookups spin this many times past moving index entries before waiting for the lock.
const find_spins_max = 10_000;

/// The slot holding `id` in a visible state, or null. Lock-free, unless a deletion keeps moving
/// index entries past it (or died doing so): then it waits for the allocator lock, which takes
/// a dead holder's over and repairs the index, and looks again with no deletion running.
pub fn find(self: *Store, id: *const ObjectId) ?Index.Found {
    var attempt: u32 = 0;
    while (attempt < find_spins_max) : (attempt += 1) {
        switch (self.segment.index.lookup(id)) {
            .found => |found| return found,
            .absent => return null,
            .unstable => std.atomic.spinLoopHint(),
        }
    }
    assert(!self.segment.lockHeld()); // the holder never sees a move
    self.lock();
    defer self.unlock();
    return switch (self.segment.index.lookup(id)) {
        .found => |found| found,
        .absent => null,
        .unstable => unreachable,
    };
}

fn ownWriting(self: *Store, id: *const ObjectId) Error!Index.Found {
    const found = self.find(id) orelse return error.Absent;
    if (found.state.tag != .writing or self.segment.index.slots[found.slot_index].actor.load(.acquire) != self.segment.actorId()) {
        status.setDetail("the object is not being written by this process", .{});
        return error.InvalidArgument;
    }
    return found;
}

/// Marks an object this process is writing as a secondary copy of one held by another node
/// (a pull's): memory pressure evicts it first, and only its memory (Spiller.zig).
pub fn markCopyElsewhere(self: *Store, id: *const ObjectId) Error!void {
    const found = try self.ownWriting(id);
    self.segment.index.extras[found.slot_index].copy_elsewhere = 1;
}

pub fn seal(self: *Store, id: *const ObjectId) Error!void {
    const found = try self.ownWriting(id);
    assert(found.state.tag == .writing);
    const slot = &self.segment.index.slots[found.slot_index];
    slot.actor.store(0, .release);
    const swapped = slot.state.cmpxchgStrong(found.state.toWord(), found.state.with(.sealed).toWord(), .seq_cst, .monotonic);
    assert(swapped == null); // only the writer moves a writing slot, and nested counts only grow on sealed children.
    self.segment.bumpSealSequence();
}

/// Discards an unsealed object of this process.
pub fn abort(self: *Store, id: *const ObjectId) Error!void {
    const found = try self.ownWriting(id);
    const slot = &self.segment.index.slots[found.slot_index];
    const s = State.of(slot.state.load(.acquire));
    assert(s.tag == .writing); // only its writer (this process) moves a writing slot
    if (slot.state.cmpxchgStrong(s.toWord(), s.with(.deleting).toWord(), .seq_cst, .monotonic) != null) return error.Busy;
    _ = slot.ref_holders.fetchAnd(~self.segment.clientBit(), .seq_cst);
    self.counts[found.slot_index] = .{};
    self.lock();
    self.finishDeleteLocked(found.slot_index, s.with(.deleting), 0);
}

/// Pins a sealed object for reading and returns where its data lies.
pub fn get(self: *Store, id: *const ObjectId) Error!Region {
    const found = self.find(id) orelse return error.Absent;
    const i = found.slot_index;
    switch (found.state.tag) {
        .sealed, .moving => {},
        .writing, .reserved => return error.NotSealed,
        .spilled, .spilling, .restoring => return error.Spilled,
        else => return error.Absent,
    }
    if (self.counts[i].pins == 0) {
        try self.acquirePinBit(i, found.state);
    }
    assert(self.segment.index.slots[i].pin_holders.load(.monotonic) & self.segment.clientBit() != 0);
    assert(self.counts[i].pins < std.math.maxInt(u32));
    self.counts[i].pins += 1;
    const extra = &self.segment.index.extras[i];
    extra.lru_tick.store(self.segment.header.lru_clock.fetchAdd(1, .monotonic), .monotonic);
    return self.regionOf(extra);
}

/// Sets this client's bit, then re-checks the state: a deleter or spiller that moved the
/// state first will see the bit and back off, or we see its state and back off (Dekker).
/// Sets this process's pin bit on a sealed object (Dekker with spillers, movers and deleters:
/// the bit is set, then the state re-read). Transient states are waited out; a spilled one is
/// for the caller to restore.
fn acquirePinBit(self: *Store, slot_index: u32, seen: State) Error!void {
    const slot = &self.segment.index.slots[slot_index];
    var attempt: u32 = 0;
    while (attempt < 100_000) : (attempt += 1) {
        _ = slot.pin_holders.fetchOr(self.segment.clientBit(), .seq_cst);
        const now = State.of(slot.state.load(.seq_cst));
        if (now.generation == seen.generation and now.tag == .sealed) return;
        _ = slot.pin_holders.fetchAnd(~self.segment.clientBit(), .seq_cst);
        if (now.generation != seen.generation or now.tag == .empty) return error.Absent;
        if (now.tag == .spilled or now.tag == .restoring) return error.Spilled;
        // deleting, spilling or moving: transient; the actor backs off when it sees a bit.
        std.atomic.spinLoopHint();
        if (attempt % 1000 == 999) _ = self.maintain();
    }
    return error.Busy;
}

/// Sets this process's reference bit. A reference only keeps deleters away, so every state
/// that still holds the object takes one at once: a spill batch keeps its objects `spilling`
/// through its write and fsync (seconds), and only pins stop a spiller or a mover. `deleting`
/// is waited out: its deleter backs off when it sees the bit, or finishes and the object is gone.
fn acquireRefBit(self: *Store, slot_index: u32, seen: State) Error!void {
    const slot = &self.segment.index.slots[slot_index];
    var attempt: u32 = 0;
    while (attempt < 100_000) : (attempt += 1) {
        _ = slot.ref_holders.fetchOr(self.segment.clientBit(), .seq_cst);
        const now = State.of(slot.state.load(.seq_cst));
        if (now.generation == seen.generation) switch (now.tag) {
            .sealed, .spilled, .spilling, .restoring, .moving => return,
            else => {},
        };
        _ = slot.ref_holders.fetchAnd(~self.segment.clientBit(), .seq_cst);
        if (now.generation != seen.generation or now.tag != .deleting) return error.Absent;
        std.atomic.spinLoopHint();
        if (attempt % 1000 == 999) _ = self.maintain();
    }
    return error.Busy;
}

pub fn release(self: *Store, id: *const ObjectId) Error!void {
    const found = self.find(id) orelse return error.Absent;
    const i = found.slot_index;
    if (self.counts[i].pins == 0) {
        status.setDetail("release without a matching get", .{});
        return error.InvalidArgument;
    }
    self.counts[i].pins -= 1;
    if (self.counts[i].pins > 0) return;
    const slot = &self.segment.index.slots[i];
    const before = slot.pin_holders.fetchAnd(~self.segment.clientBit(), .seq_cst);
    assert(before & self.segment.clientBit() != 0);
    self.tryDelete(i, found.state.generation, 0);
}

pub fn addRef(self: *Store, id: *const ObjectId) Error!void {
    const found = self.find(id) orelse return error.Absent;
    const i = found.slot_index;
    switch (found.state.tag) {
        .sealed, .spilled, .spilling, .restoring, .moving => {},
        // Only the creator holds an unsealed object, so that `abort` never strands a holder.
        .writing, .reserved => return error.NotSealed,
        else => return error.Absent,
    }
    if (self.counts[i].refs == 0) try self.acquireRefBit(i, found.state);
    assert(self.segment.index.slots[i].ref_holders.load(.monotonic) & self.segment.clientBit() != 0);
    assert(self.counts[i].refs < std.math.maxInt(u32));
    self.counts[i].refs += 1;
}

pub fn dropRef(self: *Store, id: *const ObjectId) Error!void {
    const found = self.find(id) orelse return error.Absent;
    const i = found.slot_index;
    if (self.counts[i].refs == 0) {
        status.setDetail("this process holds no reference to the object", .{});
        return error.InvalidArgument;
    }
    self.counts[i].refs -= 1;
    if (self.counts[i].refs > 0) return;
    const before = self.segment.index.slots[i].ref_holders.fetchAnd(~self.segment.clientBit(), .seq_cst);
    assert(before & self.segment.clientBit() != 0);
    self.tryDelete(i, found.state.generation, 0);
}

/// Deletes the object if nobody holds it: CAS to deleting, then re-check the holders and
/// back off if a holder appeared meanwhile (its own check will then see `deleting` and retry).
/// The CAS, the re-check, the back-off and the actor's store happen under the allocator lock:
/// a deleter killed among them leaves a `deleting` slot with no actor, which only the lock's
/// next holder can tell from a live deleter's, and gives back (Clients.endActorlessLocked). A
/// dead deleter with its actor stored had passed its re-check: its object goes.
pub fn tryDelete(self: *Store, slot_index: u32, generation: u28, depth: u32) void {
    const slot = &self.segment.index.slots[slot_index];
    // Unlocked first: most calls find a holder or another state, and take no lock.
    if (!deletable(slot, State.of(slot.state.load(.seq_cst)), generation)) return;
    self.lock();
    var attempt: u32 = 0;
    const deleted = while (attempt < 64) : (attempt += 1) {
        const s = State.of(slot.state.load(.seq_cst));
        if (!deletable(slot, s, generation)) break null;
        if (slot.state.cmpxchgStrong(s.toWord(), s.with(.deleting).toWord(), .seq_cst, .monotonic) == null) break s;
    } else null;
    const seen = deleted orelse return self.unlock();
    // A spilled object's memory went at its spill; a sealed one's is still held.
    assert((seen.tag == .spilled) == (self.segment.index.extras[slot_index].extent_size_bytes == 0));
    // The holders re-checked before the actor is stored: a deleter killed before its re-check
    // leaves no actor, and its object is given back (a holder may have come), not deleted.
    if (slot.ref_holders.load(.seq_cst) != 0 or slot.pin_holders.load(.seq_cst) != 0) {
        slot.state.store(seen.toWord(), .seq_cst);
        return self.unlock();
    }
    slot.actor.store(self.segment.actorId(), .release);
    self.finishDeleteLocked(slot_index, seen.with(.deleting), depth);
}

/// True if the slot, in state `s`, holds generation `generation`'s object, sealed or spilled,
/// in no other object, and nobody holds a reference or a pin.
fn deletable(slot: *const layout.Slot, s: State, generation: u28) bool {
    if (s.generation != generation or s.nested != 0) return false;
    if (s.tag != .sealed and s.tag != .spilled) return false;
    return slot.ref_holders.load(.seq_cst) == 0 and slot.pin_holders.load(.seq_cst) == 0;
}

const nested_depth_max = 32;

/// Ends a `deleting` object of this process's: its children lose a container (unlocked: they
/// may be deleted in turn), its extent is freed, its slot retired, its spill copy dropped.
/// Called holding the allocator lock; returns without it.
fn finishDeleteLocked(self: *Store, slot_index: u32, s: State, depth: u32) void {
    assert(s.tag == .deleting);
    assert(self.segment.lockHeld());
    const slot = &self.segment.index.slots[slot_index];
    assert(State.of(slot.state.load(.acquire)).tag == .deleting);
    assert(slot.actor.load(.monotonic) == self.segment.actorId());
    const extra = &self.segment.index.extras[slot_index];
    if (extra.child_count > 0 and extra.extent_size_bytes > 0 and depth < nested_depth_max) {
        self.unlock();
        const at: [*]const ObjectId = @ptrCast(self.segment.base + self.segment.header.data_offset + extra.extent_offset_bytes);
        self.dropNested(at[0..extra.child_count], depth);
        self.lock();
    }
    _ = self.segment.freeExtentLocked(extra);
    // Spilled, or restored with its copy kept: either way the copy goes with the object. Taken
    // before `retire`, after which the slot (and its extra) may be reused.
    const spill_file = extra.spill_file;
    extra.spill_file = 0;
    self.segment.index.retire(slot_index);
    self.unlock();
    SpillFiles.dropCopy(&self.segment, spill_file);
    self.segment.bumpSealSequence();
}

/// Waits until the object is sealed (or spilled), up to `timeout_ns`.
pub fn waitSealed(self: *Store, id: *const ObjectId, timeout_ns: u64) Error!void {
    const deadline_ns = sys.nowNs() + timeout_ns;
    while (true) {
        const sequence = self.segment.header.seal_sequence.load(.seq_cst);
        if (self.find(id)) |found| if (isSealed(found.state.tag)) return;
        const now_ns = sys.nowNs();
        if (now_ns >= deadline_ns) return error.Timeout;
        _ = self.segment.header.seal_waiters.fetchAdd(1, .seq_cst);
        // Short slices: a seal by a process that then died must not strand us.
        sys.futexWait(&self.segment.header.seal_sequence, sequence, @min(deadline_ns - now_ns, 50 * std.time.ns_per_ms));
        _ = self.segment.header.seal_waiters.fetchSub(1, .seq_cst);
    }
}

/// Sealed, in memory or not: what waitSealed waits for.
fn isSealed(tag: layout.Tag) bool {
    return switch (tag) {
        .sealed, .spilled, .spilling, .restoring, .moving => true,
        else => false,
    };
}

/// The data size of an object in any state (spilled included).
pub fn sizeOf(self: *Store, id: *const ObjectId) Error!u64 {
    const found = self.find(id) orelse return error.Absent;
    return self.segment.index.extras[found.slot_index].data_size_bytes;
}

pub const ObjectState = enum(i32) { absent = 0, writing = 1, sealed = 2, spilled = 3 };

pub fn contains(self: *Store, id: *const ObjectId) ObjectState {
    const found = self.find(id) orelse return .absent;
    return switch (found.state.tag) {
        .reserved, .writing => .writing,
        .sealed, .spilling, .moving => .sealed,
        .spilled, .restoring => .spilled,
        else => .absent,
    };
}

// ---------------------------------------------------------------- close

/// Drops everything this process holds, unregisters, and detaches. With `remove_if_last`,
/// the last process to leave removes the segment (and the caller its spill files).
/// Returns true if the segment was removed.
pub fn close(self: *Store, remove_if_last: bool, unmap: bool) bool {
    self.segment.stopPrefault();
    self.dropAllHoldings();
    // Our entry stays ours until we are done: a process that takes the allocator lock (or acts
    // on a slot) under an entry that is free again is taken for dead, and its lock taken over
    // while it is inside (two rebuilds at once marked the same extents twice).
    const segment = &self.segment;
    var removed = false;
    if (remove_if_last) {
        // Under the flock only the question and the removal: no reclaim, no allocator lock,
        // nothing that waits on another process (invariant 14). The dead need no reclaim when
        // the segment goes; when it stays, the survivors' janitors reclaim them.
        segment.lockFileExclusive();
        if (!Clients.othersAlive(segment)) {
            SpillFiles.removeAll(segment);
            SpillFiles.removeDefaultDirectory(segment);
            sys.unlink(segment.shmPath()) catch {};
            removed = true;
        }
        Clients.freeOwn(segment);
        segment.unlockFile();
    } else {
        Clients.freeOwn(segment);
    }
    std.heap.page_allocator.free(self.counts);
    segment.unmapAndClose(unmap);
    std.heap.page_allocator.destroy(self);
    return removed;
}

fn dropAllHoldings(self: *Store) void {
    for (self.counts[0..self.segment.index.highWater()], 0..) |*count, i| {
        if (count.refs == 0 and count.pins == 0) continue;
        const slot = &self.segment.index.slots[i];
        const s = State.of(slot.state.load(.acquire));
        if (s.tag == .writing and slot.actor.load(.acquire) == self.segment.actorId()) {
            var id: ObjectId = undefined;
            self.segment.index.readId(@intCast(i), &id);
            self.abort(&id) catch {};
            continue;
        }
        if (count.pins > 0) {
            _ = slot.pin_holders.fetchAnd(~self.segment.clientBit(), .seq_cst);
        }
        if (count.refs > 0) _ = slot.ref_holders.fetchAnd(~self.segment.clientBit(), .seq_cst);
        count.* = .{};
        self.tryDelete(@intCast(i), s.generation, 0);
    }
}

// ---------------------------------------------------------------- stats

pub const Stats = struct {
    capacity_bytes: u64,
    used_bytes: u64,
    pinned_bytes: u64,
    object_count: u64,
    spilled_bytes: u64,
    spilled_objects: u64,
    restored_bytes: u64,
    attached_processes: u64,
};

/// Counts what the index holds right now. A scan, not counters: counters updated beside a
/// state change drift when a process dies between the two; the index cannot.
pub fn stats(self: *Store) Stats {
    const h = self.segment.header;
    var result = Stats{
        .capacity_bytes = h.capacity_bytes,
        .used_bytes = h.used_bytes.load(.monotonic),
        .pinned_bytes = 0,
        .object_count = 0,
        .spilled_bytes = 0,
        .spilled_objects = 0,
        .restored_bytes = h.restored_bytes.load(.monotonic),
        .attached_processes = Clients.attachedProcesses(&self.segment),
    };
    const used = self.segment.index.usedSlots();
    for (used, self.segment.index.extras[0..used.len]) |*slot, *extra| {
        const tag = State.of(slot.state.load(.acquire)).tag;
        switch (tag) {
            .empty, .reserved => continue,
            else => result.object_count += 1,
        }
        // An evicted copy is out of memory but not spilled: nothing of it is on disk or in S3.
        if ((tag == .spilled or tag == .restoring) and !extra.isEvictedCopy()) {
            result.spilled_objects += 1;
            result.spilled_bytes += extra.data_size_bytes;
        }
        if (slot.pin_holders.load(.monotonic) != 0) result.pinned_bytes += extra.data_size_bytes;
    }
    return result;
}
