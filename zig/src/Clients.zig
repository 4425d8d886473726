//! The client table: one entry per attachment (pid + start time, so pid reuse cannot fool a
//! liveness check), the allocator lock whose holder is an entry, and the reclaim of a dead
//! process's entry: its reference and pin bits cleared, its unfinished transitions finished or
//! undone, its spill-file claims released, the bitmap rebuilt from the index.
//!
//! An entry's word moves free → registering → alive → (dead) reclaiming → free; a process
//! that finds every entry taken adopts a dead one's (→ registering → reclaiming by itself →
//! alive). Entering `registering` or adopting bumps the word's incarnation: an entry's index
//! (its bit in the slots, its actor id) passes from a dead process to a live one, so every
//! decision "this entry's process is dead" is acted on by a CAS of the word (or of the lock's
//! word) that holds the incarnation found dead, and fails once the entry is another process's.
//! The word also names the process acting on the entry (registrant, owner, adopter or
//! reclaimer), set by the same CAS that gives it the entry: whatever state a process is killed
//! in, its entry names it, is found dead, and is adopted or reclaimed (`actorLives`).
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
const ClientState = layout.ClientState;
const ClientWord = layout.ClientWord;
const LockWord = layout.LockWord;

/// Takes a client entry; true if it is a dead process's, adopted: its holdings are still to be
/// reclaimed (`reclaimAdopted`, once the flock is released).
pub fn register(segment: *Segment) Error!bool {
    assert(segment.client_index == layout.client_count_max); // not registered yet
    const pid = sys.getpid();
    const start_time = sys.processStartTime(pid);
    assert(pid != 0);
    var attempt: u32 = 0;
    while (attempt < register_attempts_max) : (attempt += 1) {
        if (takeFree(segment, pid, start_time)) return false;
        // Every entry is taken: adopt one whose process died.
        for (segment.clients, 0..) |*entry, i| {
            if (adopt(segment, entry, @intCast(i), pid, start_time)) return true;
        }
        // A dead one's entry that a living process reclaims is free in a moment (our first
        // pass may have found it not free yet, our second no longer dead): look again.
        if (!anyReclaimed(segment)) break;
        sys.sleepNs(std.time.ns_per_ms);
    }
    status.setDetail("store '{s}' already has {d} attached processes", .{ segment.storeName(), layout.client_count_max });
    return error.ClientsFull;
}

/// Bounds how long `register` waits for entries being reclaimed to be freed (1 ms apart).
const register_attempts_max = 200;

/// Takes a free entry; false if none was free (or each free one was taken first by another).
fn takeFree(segment: *Segment, pid: u32, start_time: u64) bool {
    for (segment.clients, 0..) |*entry, i| {
        const word = entry.word.load(.acquire);
        const current = ClientWord.of(word);
        if (current.state != .free) continue;
        assert(current.pid == 0);
        const registering = ClientWord{ .state = .registering, .incarnation = current.incarnation +% 1, .pid = pid };
        if (entry.word.cmpxchgStrong(word, registering.toWord(), .acq_rel, .monotonic) != null) continue;
        becomeClient(segment, @intCast(i), registering, start_time);
        return true;
    }
    return false;
}

/// True if some entry is free or being reclaimed (it will be free once its reclaimer is done).
fn anyReclaimed(segment: *const Segment) bool {
    for (segment.clients) |*entry| {
        const state = ClientWord.of(entry.word.load(.acquire)).state;
        if (state == .free or state == .reclaiming) return true;
    }
    return false;
}

/// Takes a dead process's entry over as its own reclaimer (so it counts as attached, and no
/// one else reclaims it), with this process's pid. The entry may have been left in any state:
/// its owner died alive or registering, or the process reclaiming it (an adopter before us, or
/// another process's reclaim) died. False if the entry's process lives or another process
/// took the entry over first.
fn adopt(segment: *Segment, entry: *layout.Client, dead: u32, pid: u32, start_time: u64) bool {
    const word = entry.word.load(.acquire);
    const current = ClientWord.of(word);
    if (current.state == .free or actorLives(segment.clients, dead, current)) return false;
    // A new incarnation, naming us: had another process adopted the entry since we read it (and
    // be alive in it now), this CAS fails instead of taking its entry. Registering first while
    // our start time goes in (a reader of a registering entry checks its pid alone), so that our
    // reclaim never shows with another process's start time and is taken for a dead one's.
    const registering = ClientWord{ .state = .registering, .incarnation = current.incarnation +% 1, .pid = pid };
    if (entry.word.cmpxchgStrong(word, registering.toWord(), .acq_rel, .monotonic) != null) return false;
    entry.start_time = start_time;
    const own_reclaim = ClientWord{ .state = .reclaiming, .reclaimer = @intCast(dead + 1), .incarnation = registering.incarnation, .pid = pid };
    entry.word.store(own_reclaim.toWord(), .release);
    segment.client_index = dead;
    segment.incarnation = own_reclaim.incarnation;
    return true;
}

/// Clears what the dead process of an adopted entry held, then makes the entry ours. The
/// caller then deletes the objects nobody holds any more.
pub fn reclaimAdopted(segment: *Segment) void {
    const dead = segment.client_index;
    const entry = &segment.clients[dead];
    const own_reclaim = entry.word.load(.acquire);
    assertOwnEntry(segment);
    assert(ClientWord.of(own_reclaim).state == .reclaiming);
    // The dead process may have died holding the allocator lock: then it is ours now, unless a
    // process waiting for it took it over first (then we wait for that one like anyone).
    const held = segment.header.alloc_lock.load(.acquire);
    const took_over = held != 0 and LockWord.of(held).holder == dead + 1 and
        segment.header.alloc_lock.cmpxchgStrong(held, segment.lockWord(), .acquire, .monotonic) == null;
    if (!took_over) lock(segment);
    reclaimLocked(segment, dead, took_over);
    unlock(segment);
    const alive = ClientWord.toWord(.{ .state = .alive, .incarnation = segment.incarnation, .pid = ClientWord.of(own_reclaim).pid });
    // Our pid and start time were in the entry before our reclaim showed in it: no one took it
    // for a dead one's.
    const swapped = entry.word.cmpxchgStrong(own_reclaim, alive, .acq_rel, .monotonic);
    assert(swapped == null);
}

/// Asserts that this attachment's entry is still its own: alive (or reclaiming what its dead
/// predecessor held, when adopted) in the incarnation it registered. A reclaimer that took a
/// live process's entry for a dead one's would clear that process's holdings under it.
pub fn assertOwnEntry(segment: *const Segment) void {
    const own = ClientWord.of(segment.clients[segment.client_index].word.load(.acquire));
    assert(own.incarnation == segment.incarnation);
    assert(own.pid != 0);
    assert(own.state == .alive or (own.state == .reclaiming and own.reclaimer == segment.actorId()));
}

fn becomeClient(segment: *Segment, client: u32, registering: ClientWord, start_time: u64) void {
    const entry = &segment.clients[client];
    assert(registering.state == .registering);
    assert(entry.word.load(.monotonic) == registering.toWord());
    entry.start_time = start_time;
    entry.word.store(ClientWord.toWord(.{ .state = .alive, .incarnation = registering.incarnation, .pid = registering.pid }), .release);
    segment.client_index = client;
    segment.incarnation = registering.incarnation;
}

/// Gives this attachment's own entry back, at close.
pub fn freeOwn(segment: *Segment) void {
    const own = segment.clients[segment.client_index].word.load(.acquire);
    assert(ClientWord.of(own).state == .alive and ClientWord.of(own).incarnation == segment.incarnation);
    freeClaimed(segment, segment.client_index, own);
}

/// Frees entry `client`, held by this attachment with word `claimed` (its own entry, or a dead
/// one it reclaimed); the incarnation stays, for the next owner to bump. One CAS, and the start
/// time stays too (the next owner writes its own while registering): a reader that loaded the
/// word before the free and reads the start time after must still find a living owner alive,
/// or it takes the entry for a dead one's, claims it, and reclaims it under the next process.
fn freeClaimed(segment: *Segment, client: u32, claimed: u64) void {
    const entry = &segment.clients[client];
    const state = ClientWord.of(claimed).state;
    assert(state == .alive or state == .reclaiming);
    const free = ClientWord.toWord(.{ .state = .free, .incarnation = ClientWord.of(claimed).incarnation });
    // Nobody takes a living process's entry or claim (the incarnation guards the one, the
    // claimer's liveness the other).
    const swapped = entry.word.cmpxchgStrong(claimed, free, .release, .monotonic);
    assert(swapped == null);
}

/// True if the process that owns entry `client` is alive: its registrant or owner, or its
/// adopter while it reclaims what the dead one before it held. An entry another process
/// reclaims has a dead owner.
pub fn isAlive(segment: *Segment, client: u32) bool {
    return ownerLives(segment.clients, client, ClientWord.of(segment.clients[client].word.load(.acquire)));
}

/// `isAlive` for entry `client` whose word was `word`. A registering entry's start time may not
/// be written yet: its pid alone is checked (a reused pid keeps the entry until that process
/// ends too). Read without attaching too (`countLive`).
fn ownerLives(clients: []const layout.Client, client: u32, word: ClientWord) bool {
    const entry = &clients[client];
    return switch (word.state) {
        .free => false,
        .registering => sys.pidAlive(word.pid),
        .alive => sys.isAlive(word.pid, entry.start_time),
        .reclaiming => word.reclaimer == client + 1 and sys.isAlive(word.pid, entry.start_time),
    };
}

/// True if the process acting on entry `client` (word `word`) is alive: its owner, or the
/// process that claimed it to reclaim it, alive while its own entry is still its own. False for
/// a free entry. An entry whose acting process is dead may be taken over whatever its state.
fn actorLives(clients: []const layout.Client, client: u32, word: ClientWord) bool {
    if (word.state != .reclaiming or word.reclaimer == client + 1) return ownerLives(clients, client, word);
    assert(word.reclaimer >= 1 and word.reclaimer <= layout.client_count_max);
    const reclaimer = word.reclaimer - 1;
    const reclaimer_word = ClientWord.of(clients[reclaimer].word.load(.acquire));
    // Its entry passed to another process since (registered, adopted or claimed): it is gone.
    if (reclaimer_word.pid != word.pid) return false;
    return ownerLives(clients, reclaimer, reclaimer_word);
}

/// Reclaims every dead process's references, pins and unfinished transitions; returns how
/// many processes were reclaimed (the caller then sweeps orphans). Cheap when nobody died: one
/// /proc read per attached process.
pub fn reclaimDead(segment: *Segment) u32 {
    var reclaimed: u32 = 0;
    for (0..segment.clients.len) |i| {
        const client: u32 = @intCast(i);
        if (client == segment.client_index) continue;
        const seen = deadWord(segment, client) orelse continue;
        const mine = claimReclaim(segment, client, seen) orelse continue;
        lock(segment);
        reclaimLocked(segment, client, false);
        unlock(segment);
        freeClaimed(segment, client, mine);
        reclaimed += 1;
    }
    return reclaimed;
}

/// Entry `client`'s word if the process acting on it (its registrant, its owner, or the
/// process reclaiming it) is dead; null otherwise. Only a snapshot: the entry may be another
/// process's by the time the caller acts, which `claimReclaim`'s CAS of the whole word
/// (incarnation and pid included) sees.
fn deadWord(segment: *Segment, client: u32) ?u64 {
    const word = segment.clients[client].word.load(.acquire);
    const current = ClientWord.of(word);
    if (current.state == .free or actorLives(segment.clients, client, current)) return null;
    return word;
}

/// Takes entry `client`, whose word was `seen` when its process was found dead, as ours to
/// reclaim; returns our claim's word, or null if the entry changed since (another reclaimer,
/// or a new incarnation: a live process, whose bits and actor id must not be touched).
fn claimReclaim(segment: *Segment, client: u32, seen: u64) ?u64 {
    const entry = &segment.clients[client];
    const own = ClientWord.of(segment.clients[segment.client_index].word.load(.acquire));
    assert(own.state == .alive and own.incarnation == segment.incarnation);
    const mine = ClientWord{ .state = .reclaiming, .reclaimer = segment.actorId(), .incarnation = ClientWord.of(seen).incarnation, .pid = own.pid };
    if (entry.word.cmpxchgStrong(seen, mine.toWord(), .acq_rel, .monotonic) != null) return null;
    // The incarnation found dead is still there, so its start time is too: a live process here
    // would be one whose holdings we are about to clear.
    assert(ClientWord.of(seen).state != .alive or !sys.isAlive(ClientWord.of(seen).pid, entry.start_time));
    return mine.toWord();
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
        if (retireReservedLocked(segment, slot_index)) continue;
        const actor = slot.actor.load(.acquire);
        const held_ref = slot.ref_holders.load(.monotonic) & bit != 0;
        if (actor == 0 and held_ref) endCutSealLocked(segment, slot_index);
        if (held_ref) _ = slot.ref_holders.fetchAnd(~bit, .seq_cst);
        if (slot.pin_holders.load(.monotonic) & bit != 0) _ = slot.pin_holders.fetchAnd(~bit, .seq_cst);
        if (actor == client + 1) undoTransitionLocked(segment, slot_index);
        if (actor == 0) endActorlessLocked(segment, slot_index);
    }
    SpillFiles.reclaimWriter(segment, client);
    RemoteFiles.reclaimClient(segment, client);
    segment.rebuildBitmapLocked();
}

/// Retires `slot_index` if it is reserved; true if it was. A slot is reserved only inside one
/// hold of the allocator lock (Index.reserve, then publish or release), and we hold it: a
/// reserved slot is a dead holder's, whoever that was. Not only the client being reclaimed:
/// a process that took the lock over from a dead holder and died itself mid-reclaim leaves
/// the first holder's reservation to whoever takes the lock from it next, which reclaims the
/// second. Its actor may be 0 too (killed between the state's store and the actor's).
fn retireReservedLocked(segment: *Segment, slot_index: u32) bool {
    assert(segment.lockHeld());
    const s = State.of(segment.index.slots[slot_index].state.load(.acquire));
    if (s.tag != .reserved) return false;
    segment.index.extras[slot_index].extent_size_bytes = 0; // the bitmap is rebuilt after
    segment.index.retire(slot_index);
    return true;
}

/// Ends the transition a dead actor left `slot_index` in: an object never sealed goes, a spill
/// whose file holds the object completes, any other move is undone.
fn undoTransitionLocked(segment: *Segment, slot_index: u32) void {
    const slot = &segment.index.slots[slot_index];
    const extra = &segment.index.extras[slot_index];
    const s = State.of(slot.state.load(.acquire));
    switch (s.tag) {
        .reserved => unreachable, // reclaimLocked retired every reserved slot first
        .writing, .deleting => {
            // Children of an unfinished object may keep one nested count too many: a leak
            // that the orphan sweep cannot see, chosen over freeing a child too early.
            extra.extent_size_bytes = 0;
            segment.index.retire(slot_index);
        },
        .spilling => {
            // A spill that recorded the object's location had its file written: finish it
            // (its extent may be freed already; the bitmap is rebuilt from the index next).
            // A secondary copy whose extent went is evicted: its bytes are on another node.
            const written = extra.spill_file != 0 or (extra.copy_elsewhere != 0 and extra.extent_size_bytes == 0);
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

/// Ends a seal cut short: a `writing` slot without an actor whose only holder (its creator:
/// `ref_add` refuses `writing`) is the dead client, killed between the seal's two stores (the
/// actor cleared, then the state). It goes as any object its creator never sealed.
fn endCutSealLocked(segment: *Segment, slot_index: u32) void {
    assert(segment.lockHeld());
    const slot = &segment.index.slots[slot_index];
    const s = State.of(slot.state.load(.acquire));
    if (s.tag != .writing) return;
    segment.index.extras[slot_index].extent_size_bytes = 0; // the bitmap is rebuilt after
    segment.index.retire(slot_index);
    segment.bumpSealSequence();
}

/// Ends a transition left with no actor: a `deleting` or `moving` slot whose actor is 0. Both
/// transitions begin (state CAS, then the actor; a deletion re-checks its holders, and may
/// back off, in between) and end or back off only under the allocator lock, and a deletion
/// retires its slot (actor 0, then empty) under it too, so one seen by the lock's holder is a
/// dead holder's. A deletion that freed nothing yet is given back (its holders' re-check may
/// not have run; an orphan is deleted by the sweep after), one whose memory and copy are gone
/// is finished.
fn endActorlessLocked(segment: *Segment, slot_index: u32) void {
    assert(segment.lockHeld());
    const slot = &segment.index.slots[slot_index];
    const extra = &segment.index.extras[slot_index];
    const s = State.of(slot.state.load(.acquire));
    switch (s.tag) {
        .moving => slot.state.store(s.with(.sealed).toWord(), .release),
        .deleting => {
            if (extra.extent_size_bytes > 0) {
                slot.state.store(s.with(.sealed).toWord(), .seq_cst);
            } else if (extra.spill_file != 0 or extra.copy_elsewhere != 0) {
                slot.state.store(s.with(.spilled).toWord(), .seq_cst);
            } else {
                segment.index.retire(slot_index);
            }
        },
        else => return,
    }
    segment.bumpSealSequence();
}

// ---------------------------------------------------------------- the allocator lock

/// Lock acquires spin this many turns before looking at the clock, then up to lock_spin_ns.
const lock_spins_untimed = 128;
const lock_spin_ns = 20 * std.time.ns_per_us;

/// Takes the allocator lock, which guards the bitmap, the index's slot pool and buckets, and
/// every reclaim. A holder found dead is taken over and reclaimed at once.
pub fn lock(segment: *Segment) void {
    const me = segment.lockWord();
    const word = &segment.header.alloc_lock;
    var spins: u32 = 0;
    var spin_deadline_ns: u64 = 0;
    // Only under an entry of our own: a free one's holder is taken for dead (see Store.close).
    assertOwnEntry(segment);
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
        if (spins % 16 == 0 and lockHolderDead(segment, holder)) {
            if (takeOver(segment, holder)) return;
            continue;
        }
        _ = segment.header.alloc_lock_waiters.fetchAdd(1, .seq_cst);
        sys.futexWait(word, holder, std.time.ns_per_ms);
        _ = segment.header.alloc_lock_waiters.fetchSub(1, .seq_cst);
    }
}

/// True if the lock's word `held` is a dead process's: its entry passed to another process
/// since (a process gives its entry up only unlocked), or its process is dead.
fn lockHolderDead(segment: *Segment, held: u32) bool {
    const holder = LockWord.of(held);
    assert(holder.holder >= 1 and holder.holder <= layout.client_count_max);
    const word = ClientWord.of(segment.clients[holder.holder - 1].word.load(.acquire));
    if (word.incarnation != holder.incarnation) return true;
    return !ownerLives(segment.clients, holder.holder - 1, word);
}

/// Takes the lock from the dead holder whose word is `held`, and reclaims it; false if the
/// word changed since it was found dead (another taker, or a holder alive in that entry now).
fn takeOver(segment: *Segment, held: u32) bool {
    if (segment.header.alloc_lock.cmpxchgStrong(held, segment.lockWord(), .acquire, .monotonic) != null) return false;
    assert(lockHolderDead(segment, held)); // death is final, and the incarnation only moves on
    reclaimLocked(segment, LockWord.of(held).holder - 1, true);
    return true;
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
        const word = ClientWord.of(entry.word.load(.acquire));
        if (!ownerLives(segment.clients, @intCast(i), word)) continue;
        const pid = word.pid;
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
    const clients = first[0..layout.client_count_max];
    // Distinct processes: one may hold two entries (its background spiller's).
    var pids: [layout.client_count_max]u32 = undefined;
    var live: u32 = 0;
    for (clients, 0..) |*entry, i| {
        const word = ClientWord.of(@atomicLoad(u64, &entry.word.raw, .acquire));
        if (!ownerLives(clients, @intCast(i), word)) continue;
        if (std.mem.indexOfScalar(u32, pids[0..live], word.pid) != null) continue;
        pids[live] = word.pid;
        live += 1;
    }
    return live;
}

// ---------------------------------------------------------------- tests

const testing = std.testing;

/// A test's attachments: mapped and registered, as Store.open does, without a Store.
const TestSegment = struct {
    var counter: u32 = 0;

    fn create(name_buffer: []u8) !*Segment {
        counter += 1;
        const name = try std.fmt.bufPrint(name_buffer, "unit-clients-{d}-{d}", .{ sys.getpid(), counter });
        return open(name, .{ .capacity_bytes = 1 << 20, .exclusive = true, .prefault = false });
    }

    fn open(name: []const u8, options: Segment.OpenOptions) !*Segment {
        const segment = try testing.allocator.create(Segment);
        errdefer testing.allocator.destroy(segment);
        _ = try segment.map(name, options);
        defer segment.unlockFile();
        if (try register(segment)) reclaimAdopted(segment);
        return segment;
    }

    fn close(segment: *Segment, remove: bool) void {
        freeOwn(segment);
        if (remove) sys.unlink(segment.shmPath()) catch {};
        segment.unmapAndClose(true);
        testing.allocator.destroy(segment);
    }
};

/// A pid that ran and is gone (reaped), as a process SIGKILLed long ago.
fn deadPid() !u32 {
    const pid = try sys.fork();
    if (pid == 0) std.os.linux.exit_group(0);
    var wait_status: i32 = 0;
    _ = std.os.linux.waitpid(@intCast(pid), &wait_status, 0);
    return @intCast(pid);
}

/// Makes entry `client` a dead process's (alive in the table, its process gone) and every
/// other free entry a living one's, so that the next process to register must adopt `client`.
fn fillTableAroundDead(segment: *Segment, client: u32) !void {
    const dead_pid = try deadPid();
    const own_pid = sys.getpid();
    const own_start = sys.processStartTime(own_pid);
    for (segment.clients, 0..) |*entry, i| {
        const word = ClientWord.of(entry.word.load(.acquire));
        if (i != client and word.state != .free) continue;
        entry.start_time = own_start;
        entry.word.store(ClientWord.toWord(.{ .state = .alive, .incarnation = word.incarnation, .pid = if (i == client) dead_pid else own_pid }), .release);
    }
}

/// Frees the entries `fillTableAroundDead` made (every one but the attachments' own).
fn emptyTable(segment: *Segment, keep: []const *Segment) void {
    for (segment.clients, 0..) |*entry, i| {
        const kept = for (keep) |attachment| {
            if (attachment.client_index == i) break true;
        } else false;
        if (kept) continue;
        entry.start_time = 0;
        entry.word.store(ClientWord.toWord(.{ .state = .free }), .release);
    }
}

test "a reclaimer that found an entry's process dead cannot take the entry once a live process adopted it" {
    var name_buffer: [64]u8 = undefined;
    const first = try TestSegment.create(&name_buffer);
    defer TestSegment.close(first, true);
    const victim: u32 = 5;
    try fillTableAroundDead(first, victim);
    // `first` finds the entry dead ... and is preempted before its CAS.
    const seen = deadWord(first, victim) orelse return error.NotFoundDead;
    // Meanwhile a new process finds every entry taken and adopts the dead one's.
    const adopter = try TestSegment.open(first.storeName(), .{ .create = false });
    try testing.expectEqual(victim, adopter.client_index);
    try testing.expect(isAlive(first, victim));
    // The stale decision must not take the live adopter's entry (it would clear its holdings).
    try testing.expectEqual(@as(?u64, null), claimReclaim(first, victim, seen));
    try testing.expectEqual(@as(?u64, null), deadWord(first, victim));
    assertOwnEntry(adopter);
    emptyTable(first, &.{ first, adopter });
    TestSegment.close(adopter, false);
}

test "a waiter that found the lock's holder dead cannot take the lock from the process that adopted its entry" {
    var name_buffer: [64]u8 = undefined;
    const first = try TestSegment.create(&name_buffer);
    defer TestSegment.close(first, true);
    const victim: u32 = 7;
    try fillTableAroundDead(first, victim);
    // The dead process held the allocator lock.
    const incarnation = ClientWord.of(first.clients[victim].word.load(.acquire)).incarnation;
    const held = LockWord.toWord(.{ .holder = victim + 1, .incarnation = incarnation });
    first.header.alloc_lock.store(held, .release);
    // `first`, waiting for the lock, finds its holder dead ... and is preempted.
    try testing.expect(lockHolderDead(first, held));
    // A new process adopts the dead one's entry, takes over its lock and reclaims it, then
    // takes the lock for itself as any process does.
    const adopter = try TestSegment.open(first.storeName(), .{ .create = false });
    try testing.expectEqual(victim, adopter.client_index);
    lock(adopter);
    try testing.expect(!lockHolderDead(first, first.header.alloc_lock.load(.acquire)));
    // The stale decision must not take the lock from under the adopter (nor reclaim it).
    try testing.expect(!takeOver(first, held));
    try testing.expect(adopter.lockHeld());
    unlock(adopter);
    emptyTable(first, &.{ first, adopter });
    TestSegment.close(adopter, false);
}

test "a taker killed mid-reclaim leaves the first dead holder's reservation to the next taker" {
    var name_buffer: [64]u8 = undefined;
    const first = try TestSegment.create(&name_buffer);
    defer TestSegment.close(first, true);
    const taker = try TestSegment.open(first.storeName(), .{ .create = false });
    const holder = try TestSegment.open(first.storeName(), .{ .create = false });
    // The holder reserves a slot under the lock and is killed there.
    const id: layout.ObjectId = @splat(0x5a);
    lock(holder);
    const slot_index = try holder.index.reserve(&id, holder.actorId());
    const dead_pid = try deadPid();
    holder.clients[holder.client_index].word.store(ClientWord.toWord(.{ .state = .alive, .incarnation = holder.incarnation, .pid = dead_pid }), .release);
    // The taker takes the lock over and is killed before its reclaim reached the slot.
    first.header.alloc_lock.store(taker.lockWord(), .release);
    taker.clients[taker.client_index].word.store(ClientWord.toWord(.{ .state = .alive, .incarnation = taker.incarnation, .pid = dead_pid }), .release);
    // The next taker reclaims the taker: the holder's reservation goes too, though its own
    // entry waits for a reclaim of its own.
    lock(first);
    try testing.expectEqual(layout.Tag.empty, State.of(first.index.slots[slot_index].state.load(.acquire)).tag);
    try testing.expect(first.index.lookup(&id) == .absent);
    // The id can be reserved again (a reserve that met the stale one asserted).
    const again = try first.index.reserve(&id, first.actorId());
    first.index.release(again);
    unlock(first);
    try testing.expectEqual(@as(u32, 2), reclaimDead(first));
    for ([_]*Segment{ taker, holder }) |dead| {
        dead.unmapAndClose(true);
        testing.allocator.destroy(dead);
    }
}

test "a reclaim frees a dead process's entry; the next process in it is a new incarnation" {
    var name_buffer: [64]u8 = undefined;
    const first = try TestSegment.create(&name_buffer);
    defer TestSegment.close(first, true);
    const second = try TestSegment.open(first.storeName(), .{ .create = false });
    const client = second.client_index;
    const incarnation = second.incarnation;
    // As if `second` was SIGKILLed: its entry stays alive with its pid gone.
    second.clients[client].word.store(ClientWord.toWord(.{ .state = .alive, .incarnation = incarnation, .pid = try deadPid() }), .release);
    try testing.expectEqual(@as(u32, 1), reclaimDead(first));
    try testing.expectEqual(ClientWord.toWord(.{ .state = .free, .incarnation = incarnation }), first.clients[client].word.load(.acquire));
    const third = try TestSegment.open(first.storeName(), .{ .create = false });
    try testing.expectEqual(client, third.client_index);
    try testing.expectEqual(incarnation +% 1, third.incarnation);
    TestSegment.close(third, false);
    second.unmapAndClose(true);
    testing.allocator.destroy(second);
}

/// Where in register, adopt or reclaim the process holding an entry was killed.
const Death = enum {
    /// A registrant, after its CAS took a free entry, before its start time went in.
    registering,
    /// An adopter, after its CAS took a dead one's entry, before its start time went in.
    adopting,
    /// An adopter, reclaiming what the dead one before it held.
    reclaiming_adopted,
    /// A process that claimed a dead one's entry to reclaim it, its own entry left alive.
    reclaiming_claimed,
    /// The same, its own entry since passed to a living process.
    reclaiming_claimed_entry_reused,
};

/// Leaves entry `victim` as a process killed at `death` leaves it, and every other free entry
/// a living process's, so that the next process to register must adopt `victim` or fail.
fn killIn(segment: *Segment, victim: u32, death: Death) !void {
    const dead_pid = try deadPid();
    const own_pid = sys.getpid();
    const own_start = sys.processStartTime(own_pid);
    for (segment.clients) |*entry| {
        const word = ClientWord.of(entry.word.load(.acquire));
        if (word.state != .free) continue;
        entry.start_time = own_start;
        entry.word.store(ClientWord.toWord(.{ .state = .alive, .incarnation = word.incarnation, .pid = own_pid }), .release);
    }
    // The claimed cases' reclaimer: its own entry, alive with its process dead, or another's.
    const reclaimer = victim + 1;
    if (death == .reclaiming_claimed) {
        const word = ClientWord.of(segment.clients[reclaimer].word.load(.acquire));
        segment.clients[reclaimer].word.store(ClientWord.toWord(.{ .state = .alive, .incarnation = word.incarnation, .pid = dead_pid }), .release);
    }
    const entry = &segment.clients[victim];
    const incarnation = ClientWord.of(entry.word.load(.acquire)).incarnation +% 1;
    // The start time is the dead one's before, except for a registrant's free entry.
    if (death == .registering) entry.start_time = 0;
    const word: ClientWord = switch (death) {
        .registering, .adopting => .{ .state = .registering, .incarnation = incarnation, .pid = dead_pid },
        .reclaiming_adopted => .{ .state = .reclaiming, .reclaimer = @intCast(victim + 1), .incarnation = incarnation, .pid = dead_pid },
        .reclaiming_claimed, .reclaiming_claimed_entry_reused => .{ .state = .reclaiming, .reclaimer = @intCast(reclaimer + 1), .incarnation = incarnation, .pid = dead_pid },
    };
    entry.word.store(word.toWord(), .release);
}

test "a full table's newcomer adopts an entry whose process was killed anywhere in register, adopt or reclaim" {
    for (std.enums.values(Death)) |death| {
        errdefer std.debug.print("killed {t}\n", .{death});
        var name_buffer: [64]u8 = undefined;
        const first = try TestSegment.create(&name_buffer);
        defer TestSegment.close(first, true);
        const victim: u32 = 5;
        try killIn(first, victim, death);
        try testing.expect(!isAlive(first, victim));
        const adopter = try TestSegment.open(first.storeName(), .{ .create = false });
        try testing.expectEqual(victim, adopter.client_index);
        const own = ClientWord.of(adopter.clients[victim].word.load(.acquire));
        try testing.expectEqual(ClientState.alive, own.state);
        try testing.expectEqual(sys.getpid(), own.pid);
        try testing.expect(isAlive(first, victim));
        emptyTable(first, &.{ first, adopter });
        TestSegment.close(adopter, false);
    }
}

test "a reclaim frees an entry whose process was killed anywhere in register, adopt or reclaim" {
    for (std.enums.values(Death)) |death| {
        errdefer std.debug.print("killed {t}\n", .{death});
        var name_buffer: [64]u8 = undefined;
        const first = try TestSegment.create(&name_buffer);
        defer TestSegment.close(first, true);
        const victim: u32 = 5;
        try killIn(first, victim, death);
        try testing.expect(reclaimDead(first) >= 1);
        try testing.expectEqual(ClientState.free, ClientWord.of(first.clients[victim].word.load(.acquire)).state);
        try testing.expectEqual(@as(u32, 0), ClientWord.of(first.clients[victim].word.load(.acquire)).pid);
        emptyTable(first, &.{first});
    }
}

test "a reader that loaded an entry's word before its owner freed it still finds the owner alive" {
    var name_buffer: [64]u8 = undefined;
    const first = try TestSegment.create(&name_buffer);
    defer TestSegment.close(first, true);
    const second = try TestSegment.open(first.storeName(), .{ .create = false });
    const client = second.client_index;
    // `first` reads the word of `second`'s entry ... and `second` closes before `first` reads
    // the start time: a living owner, whose entry a claim would take from the next process.
    const seen = ClientWord.of(first.clients[client].word.load(.acquire));
    freeOwn(second);
    try testing.expect(actorLives(first.clients, client, seen));
    second.unmapAndClose(true);
    testing.allocator.destroy(second);
}
