//! The client table: one entry per attachment (pid + start time, so pid reuse cannot fool a
//! liveness check), the allocator lock whose holder is an entry, and the reclaim of a dead
//! process's entry: its reference and pin bits cleared, its unfinished transitions finished or
//! undone, its spill-file claims released, the bitmap rebuilt from the index.
//!
//! An entry's word moves free → registering → alive → (dead) reclaiming → free; a process
//! that finds every entry taken adopts a dead one's (alive → reclaiming by itself → alive).
//! Objects nobody holds after a reclaim are deleted by the caller (Store.sweepOrphans): that is
//! the object lifecycle's job, not the table's.

const std = @import("std");
const assert = std.debug.assert;
const layout = @import("layout.zig");
const sys = @import("sys.zig");
const status = @import("status.zig");
const shm_names = @import("shm_names.zig");
const Segment = @import("Segment.zig");
const SpillFiles = @import("SpillFiles.zig");
const RemoteFiles = @import("RemoteFiles.zig");

const Error = status.Error;
const State = layout.State;
const ClientWord = layout.ClientWord;

/// Takes a client entry; true if it is a dead process's, adopted: its holdings are still to be
/// reclaimed (`reclaimAdopted`, once the flock is released).
pub fn register(segment: *Segment) Error!bool {
    assert(segment.client_index == layout.client_count_max); // not registered yet
    const pid = sys.getpid();
    const start_time = sys.processStartTime(pid);
    const free_word = ClientWord.toWord(.{ .state = .free });
    const registering = ClientWord.toWord(.{ .state = .registering });
    for (segment.clients, 0..) |*entry, i| {
        if (entry.word.cmpxchgStrong(free_word, registering, .acq_rel, .monotonic) != null) continue;
        becomeClient(segment, @intCast(i), pid, start_time);
        return false;
    }
    // Every entry is taken: adopt one whose process died.
    for (segment.clients, 0..) |*entry, i| {
        if (adopt(segment, entry, @intCast(i), pid, start_time)) return true;
    }
    status.setDetail("store '{s}' already has {d} attached processes", .{ segment.storeName(), layout.client_count_max });
    return error.ClientsFull;
}

/// Takes a dead process's entry over as its own reclaimer (so it counts as attached, and no
/// one else reclaims it), with this process's pid. False if the entry is not dead or another
/// process took it over first.
fn adopt(segment: *Segment, entry: *layout.Client, dead: u32, pid: u32, start_time: u64) bool {
    const word = entry.word.load(.acquire);
    if (ClientWord.of(word).state != .alive or entry.pid == 0 or sys.isAlive(entry.pid, entry.start_time)) return false;
    const own_reclaim = ClientWord.toWord(.{ .state = .reclaiming, .reclaimer = @intCast(dead + 1) });
    if (entry.word.cmpxchgStrong(word, own_reclaim, .acq_rel, .monotonic) != null) return false;
    entry.pid = pid;
    entry.start_time = start_time;
    segment.client_index = dead;
    return true;
}

/// Clears what the dead process of an adopted entry held, then makes the entry ours. The
/// caller then deletes the objects nobody holds any more.
pub fn reclaimAdopted(segment: *Segment) Error!void {
    const dead = segment.client_index;
    const entry = &segment.clients[dead];
    const own_reclaim = ClientWord.toWord(.{ .state = .reclaiming, .reclaimer = @intCast(dead + 1) });
    // The dead process may have died holding the allocator lock: then it is ours now.
    const took_over = segment.header.alloc_lock.load(.acquire) == dead + 1;
    if (!took_over) lock(segment);
    reclaimLocked(segment, dead, took_over);
    unlock(segment);
    const alive = ClientWord.toWord(.{ .state = .alive });
    if (entry.word.cmpxchgStrong(own_reclaim, alive, .acq_rel, .monotonic) != null) {
        // Another process took our reclaim for a dead one's (it read the entry's pid before we
        // wrote ours) and frees the entry: we hold nothing, so nothing is lost but the attach.
        status.setDetail("store '{s}' has {d} attached processes, and the dead one's entry this process took over was taken again; try again", .{ segment.storeName(), layout.client_count_max });
        return error.Busy;
    }
}

fn becomeClient(segment: *Segment, client: u32, pid: u32, start_time: u64) void {
    const entry = &segment.clients[client];
    assert(ClientWord.of(entry.word.load(.monotonic)).state == .registering);
    entry.pid = pid;
    entry.start_time = start_time;
    entry.word.store(ClientWord.toWord(.{ .state = .alive }), .release);
    segment.client_index = client;
}

/// Gives entry `client` back: this attachment's own at close, or a dead one's once reclaimed.
pub fn free(segment: *Segment, client: u32) void {
    const entry = &segment.clients[client];
    const state = ClientWord.of(entry.word.load(.monotonic)).state;
    assert(state == .alive or state == .reclaiming);
    entry.pid = 0;
    entry.start_time = 0;
    entry.word.store(ClientWord.toWord(.{ .state = .free }), .release);
}

/// A process that registered and has not died. An entry mid-registration (pid still 0)
/// counts as alive: its process is a few instructions from filling it in.
pub fn isAlive(segment: *Segment, client: u32) bool {
    const entry = &segment.clients[client];
    if (ClientWord.of(entry.word.load(.acquire)).state == .free) return false;
    if (entry.pid == 0) return true;
    return sys.isAlive(entry.pid, entry.start_time);
}

/// Reclaims every dead process's references, pins and unfinished transitions; returns how
/// many processes were reclaimed (the caller then sweeps orphans). Cheap when nobody died: one
/// /proc read per attached process.
pub fn reclaimDead(segment: *Segment) u32 {
    var reclaimed: u32 = 0;
    const me = segment.actorId();
    for (segment.clients, 0..) |*entry, i| {
        const client: u32 = @intCast(i);
        if (client == segment.client_index) continue;
        const word = entry.word.load(.acquire);
        const current = ClientWord.of(word);
        const dead = switch (current.state) {
            // A process that dies mid-registration leaks its entry: a window of a few
            // instructions, not worth a protocol.
            .free, .registering => false,
            .alive => entry.pid != 0 and !sys.isAlive(entry.pid, entry.start_time),
            .reclaiming => current.reclaimer != me and !isAlive(segment, current.reclaimer - 1),
        };
        if (!dead) continue;
        const mine = ClientWord.toWord(.{ .state = .reclaiming, .reclaimer = me });
        if (entry.word.cmpxchgStrong(word, mine, .acq_rel, .monotonic) != null) continue;
        lock(segment);
        reclaimLocked(segment, client, false);
        unlock(segment);
        free(segment, client);
        reclaimed += 1;
    }
    return reclaimed;
}

/// Drops a dead client's holdings and finishes or undoes its transitions, then rebuilds the
/// bitmap from the index, since the dead process may have been inside the allocator. With
/// `held_lock` (it died holding the allocator lock, now ours) the index's slot pool and bucket
/// table may be half updated too: rebuilt and repaired from the slots first.
fn reclaimLocked(segment: *Segment, client: u32, held_lock: bool) void {
    assert(segment.lockHeld());
    assert(client < layout.client_count_max);
    if (held_lock) {
        segment.index.rebuildSlotPool();
        _ = segment.index.repairBuckets(segment.scratch.seen);
    }
    const bit = @as(u64, 1) << @intCast(client);
    for (segment.index.usedSlots(), 0..) |*slot, i| {
        const slot_index: u32 = @intCast(i);
        if (slot.ref_holders.load(.monotonic) & bit != 0) _ = slot.ref_holders.fetchAnd(~bit, .seq_cst);
        if (slot.pin_holders.load(.monotonic) & bit != 0) _ = slot.pin_holders.fetchAnd(~bit, .seq_cst);
        if (slot.actor.load(.acquire) == client + 1) undoTransitionLocked(segment, slot_index);
    }
    SpillFiles.reclaimWriter(segment, client);
    RemoteFiles.reclaimClient(segment, client);
    segment.rebuildBitmapLocked();
}

/// Ends the transition a dead actor left `slot_index` in: an object never sealed goes, a spill
/// whose file holds the object completes, any other move is undone.
fn undoTransitionLocked(segment: *Segment, slot_index: u32) void {
    const slot = &segment.index.slots[slot_index];
    const extra = &segment.index.extras[slot_index];
    const s = State.of(slot.state.load(.acquire));
    switch (s.tag) {
        .reserved, .writing, .deleting => {
            // Children of an unfinished object may keep one nested count too many: a leak
            // that the orphan sweep cannot see, chosen over freeing a child too early.
            extra.extent_size_bytes = 0;
            segment.index.retire(slot_index);
        },
        .spilling => {
            // A spill that recorded the object's location had its file written: finish it
            // (its extent may be freed already; the bitmap is rebuilt from the index next).
            const written = extra.spill_file != 0;
            if (written) extra.extent_size_bytes = 0;
            slot.state.store(s.with(if (written) .spilled else .sealed).toWord(), .release);
        },
        .moving => slot.state.store(s.with(.sealed).toWord(), .release),
        .restoring => {
            extra.extent_size_bytes = 0;
            slot.state.store(s.with(.spilled).toWord(), .release);
        },
        // Sealed and spilled have no actor; an empty slot was retired by the dead itself.
        .empty, .sealed, .spilled => {},
    }
    slot.actor.store(0, .release);
    segment.bumpSealSequence();
}

// ---------------------------------------------------------------- the allocator lock

/// Lock acquires spin this many turns before looking at the clock, then up to lock_spin_ns.
const lock_spins_untimed = 128;
const lock_spin_ns = 20 * std.time.ns_per_us;

/// Takes the allocator lock, which guards the bitmap, the index's slot pool and buckets, and
/// every reclaim. A holder found dead is taken over and reclaimed at once.
pub fn lock(segment: *Segment) void {
    const me = segment.client_index + 1;
    const word = &segment.header.alloc_lock;
    var spins: u32 = 0;
    var spin_deadline_ns: u64 = 0;
    // Only under an entry of our own: a free one's holder is taken for dead (see Store.close).
    assert(ClientWord.of(segment.clients[segment.client_index].word.load(.monotonic)).state != .free);
    while (true) : (spins += 1) {
        if (word.cmpxchgWeak(0, me, .acquire, .monotonic) == null) return;
        // Two-phase: spin about as long as sleeping and being woken would cost (a futex wake
        // of an idle vCPU costs the waker 15-30 µs here), then sleep.
        if (spins == lock_spins_untimed) spin_deadline_ns = sys.nowNs() + lock_spin_ns;
        if (spins < lock_spins_untimed or spins % 64 != 0 or sys.nowNs() < spin_deadline_ns) {
            std.atomic.spinLoopHint();
            continue;
        }
        const holder = word.load(.monotonic);
        if (holder == 0) continue;
        assert(holder != me); // the lock is not re-entrant
        assert(holder <= layout.client_count_max);
        if (spins % 16 == 0 and !isAlive(segment, holder - 1)) {
            if (word.cmpxchgStrong(holder, me, .acquire, .monotonic) == null) {
                reclaimLocked(segment, holder - 1, true);
                return;
            }
            continue;
        }
        _ = segment.header.alloc_lock_waiters.fetchAdd(1, .seq_cst);
        sys.futexWait(word, holder, std.time.ns_per_ms);
        _ = segment.header.alloc_lock_waiters.fetchSub(1, .seq_cst);
    }
}

pub fn unlock(segment: *Segment) void {
    const word = &segment.header.alloc_lock;
    assert(segment.lockHeld());
    word.store(0, .seq_cst);
    if (segment.header.alloc_lock_waiters.load(.seq_cst) > 0) sys.futexWakeAll(word);
}

// ---------------------------------------------------------------- who is attached

/// Distinct living processes attached (one process may hold two entries: its background
/// spiller). A dead process not reclaimed yet is not counted.
pub fn attachedProcesses(segment: *Segment) u32 {
    var pids: [layout.client_count_max]u32 = undefined;
    var count: u32 = 0;
    for (segment.clients, 0..) |*entry, i| {
        if (!isAlive(segment, @intCast(i))) continue;
        const pid = entry.pid;
        if (std.mem.indexOfScalar(u32, pids[0..count], pid) != null) continue;
        pids[count] = pid;
        count += 1;
    }
    return count;
}

/// True if an entry other than ours is a living process's (or one registering).
pub fn othersAlive(segment: *Segment) bool {
    for (0..segment.clients.len) |i| {
        const client: u32 = @intCast(i);
        if (client != segment.client_index and isAlive(segment, client)) return true;
    }
    return false;
}

/// Attached entries (each attachment, whatever its process).
pub fn attachedCount(segment: *Segment) u32 {
    var count: u32 = 0;
    for (segment.clients) |*entry| {
        if (ClientWord.of(entry.word.load(.acquire)).state != .free) count += 1;
    }
    return count;
}

/// How many living processes use the store `name`, read without attaching to it (so without
/// touching a store in use). A segment someone holds exclusively (being created, or removed
/// by its last process) counts as used. Errors: StoreNotFound, and the attach errors for a
/// segment this library cannot read.
pub fn countLive(name: []const u8) Error!u32 {
    try shm_names.validateStoreName(name);
    var path_buffer: [shm_names.store_path_size_max]u8 = undefined;
    const shm_path = shm_names.storePath(&path_buffer, name);
    const fd = sys.open(shm_path, .{ .ACCMODE = .RDONLY, .CLOEXEC = true }, 0) catch |err| switch (err) {
        error.NotFound => return error.StoreNotFound,
        error.PermissionDenied => return error.PermissionDenied,
        else => return error.System,
    };
    defer sys.close(fd);
    const rc = std.os.linux.flock(fd, std.posix.LOCK.SH | std.posix.LOCK.NB);
    if (std.os.linux.errno(rc) == .AGAIN) return 1;
    const size_bytes = sys.fileSize(fd) catch return error.System;
    const clients_end_bytes = layout.page_size_bytes + layout.client_count_max * @sizeOf(layout.Client);
    if (size_bytes < clients_end_bytes) return Segment.badStore(shm_path, "it is smaller than a header");
    const map_bytes = std.mem.alignForward(usize, clients_end_bytes, layout.page_size_bytes);
    const mapped = std.os.linux.mmap(null, map_bytes, .{ .READ = true }, .{ .TYPE = .SHARED }, fd, 0);
    if (std.os.linux.errno(mapped) != .SUCCESS) return error.System;
    const base: [*]align(layout.page_size_bytes) u8 = @ptrFromInt(mapped);
    defer sys.unmap(base, map_bytes);
    const h: *const layout.Header = @ptrCast(base);
    if (h.magic != layout.magic) return Segment.badStore(shm_path, "its magic number is wrong");
    if (h.abi_version != layout.abi_version or h.layout_hash != layout.layout_hash) return Segment.abiMismatch(h, name);
    if (h.clients_offset != layout.page_size_bytes) return Segment.badStore(shm_path, "its section offsets are inconsistent");
    const first: [*]const layout.Client = @ptrCast(@alignCast(base + h.clients_offset));
    // Distinct processes: one may hold two entries (its background spiller's).
    var pids: [layout.client_count_max]u32 = undefined;
    var live: u32 = 0;
    for (first[0..layout.client_count_max]) |*entry| {
        const state = ClientWord.of(@atomicLoad(u32, &entry.word.raw, .acquire)).state;
        if (state == .free) continue;
        const pid = entry.pid; // 0: registering, alive by definition
        if (pid != 0 and (std.mem.indexOfScalar(u32, pids[0..live], pid) != null or !sys.isAlive(pid, entry.start_time))) continue;
        pids[live] = pid;
        live += 1;
    }
    return live;
}
