//! One process's attachment to a named store: the shared segment, its client entry, and the
//! private per-slot counts of the references and pins this process holds.
//!
//! Objects: `create` → write → `seal` → `get` (pin) / `release` → last holder gone → deleted.
//! Lookups and pins are lock-free (CAS on `Slot.state`); only allocation, freeing and
//! crash recovery take the allocator lock, whose holder is recorded so a death is detected.

const std = @import("std");
const assert = std.debug.assert;
const layout = @import("layout.zig");
const sys = @import("sys.zig");
const status = @import("status.zig");
const BlockBitmap = @import("BlockBitmap.zig");
const Index = @import("Index.zig");
const Spiller = @import("Spiller.zig");
const RemoteFiles = @import("RemoteFiles.zig");
const Compactor = @import("Compactor.zig");

const Store = @This();
const Error = status.Error;
const Tag = layout.Tag;
const State = layout.State;
const ObjectId = layout.ObjectId;

pub const OpenOptions = struct {
    create: bool = true,
    /// With `create`: fail if the store exists instead of attaching.
    exclusive: bool = false,
    capacity_bytes: u64 = 0,
    /// 0 = derived from the capacity.
    slot_count: u32 = 0,
    /// Fault the arena's pages in from a background thread so puts copy at warm speed.
    prefault: bool = true,
    /// False: start no thread at all, not even the one that faults the index in (a process
    /// forked from a signal handler must not: see exits.zig).
    threads: bool = true,
};

/// This process's holdings of one slot; only this process reads or writes it.
const Count = struct { refs: u32 = 0, pins: u32 = 0 };

fd: i32,
base: [*]align(layout.page_size_bytes) u8,
segment_size_bytes: usize,
header: *layout.Header,
clients: []layout.Client,
index: Index,
spill_files: []layout.SpillFile,
bitmap: BlockBitmap,
client_index: u32,
counts: []Count,
path_buffer: [layout.name_size_max + 32]u8,
path_size_bytes: usize,
/// True if this process created the segment (its settings, like the spill directory, are ours to make).
created: bool = false,
prefault_thread: ?std.Thread = null,
prefault_stop: std.atomic.Value(bool) = .init(false),

pub const shm_dir = "/dev/shm/";
pub const shm_prefix = "objstore-";
const attach_wait_ns = 2 * std.time.ns_per_s;

/// Store names become file names in /dev/shm: no '/', no NUL, no hidden or dot names. Names
/// starting "ch-" are refused: `objstore-ch-…` is where worker channels live (Channel.zig).
pub fn validateName(name: []const u8) Error!void {
    if (name.len == 0 or name.len > layout.name_size_max) {
        status.setDetail("store name must be 1 to {d} bytes, got {d}", .{ layout.name_size_max, name.len });
        return error.InvalidArgument;
    }
    if (!fileNameChars(name) or name[0] == '.') {
        status.setDetail("store name '{s}' may only hold letters, digits, '-', '_' and '.' (not first)", .{name});
        return error.InvalidArgument;
    }
    if (std.mem.startsWith(u8, name, channel_prefix)) {
        status.setDetail("store name '{s}' may not start with '{s}' (worker channels' files are named so)", .{ name, channel_prefix });
        return error.InvalidArgument;
    }
}

/// What `objstore-<store name>` must not start with; channel files are `objstore-ch-…`.
pub const channel_prefix = "ch-";

/// True if every byte of `name` is a letter, a digit, '-', '_' or '.'.
pub fn fileNameChars(name: []const u8) bool {
    for (name) |c| {
        if (!(std.ascii.isAlphanumeric(c) or c == '-' or c == '_' or c == '.')) return false;
    }
    return true;
}

pub fn open(name: []const u8, options: OpenOptions) Error!*Store {
    try validateName(name);
    const self = std.heap.page_allocator.create(Store) catch return error.System;
    errdefer std.heap.page_allocator.destroy(self);
    self.* = undefined;
    self.prefault_thread = null;
    self.prefault_stop = .init(false);
    const shm_path = self.setPath(name);
    const created = try self.createOrAttach(shm_path, name, options);
    errdefer self.unmapAndClose(true);
    self.counts = std.heap.page_allocator.alloc(Count, self.index.slots.len) catch {
        _ = std.os.linux.flock(self.fd, std.posix.LOCK.UN);
        return error.System;
    };
    @memset(self.counts, .{});
    errdefer std.heap.page_allocator.free(self.counts);
    // Registered under the segment's flock: the last process leaving removes the segment
    // holding it exclusively, so it either sees this process registered or unlinked the
    // segment before this process locked it (and createOrAttach then tried again). Nothing
    // that waits is done under it (invariant 14): an adopted entry is reclaimed after.
    const adopted = register: {
        defer _ = std.os.linux.flock(self.fd, std.posix.LOCK.UN);
        break :register try self.register();
    };
    if (adopted) try self.reclaimAdopted();
    self.created = created;
    // Fault the header, client table and allocator bitmap in now rather than one miss at a
    // time; the data region too when this process created the store and asked for it. Not the
    // index: its pages are touched as objects use them.
    if (options.threads) self.startPrefault(created and options.prefault);
    return self;
}

/// Creates the segment or attaches to it, and returns with its flock held (exclusive when it
/// created it, shared when it attached); true if it created it. A segment removed by its last
/// process between our open and our lock is not attached to: we start over.
fn createOrAttach(self: *Store, shm_path: [:0]const u8, name: []const u8, options: OpenOptions) Error!bool {
    var attempt: u32 = 0;
    while (attempt < 8) : (attempt += 1) {
        if (options.create) {
            if (createSegment(self, shm_path, name, options)) |_| {
                return true;
            } else |err| switch (err) {
                error.StoreExists => if (options.exclusive) {
                    status.setDetail("store '{s}' already exists", .{name});
                    return err;
                },
                else => return err,
            }
        }
        if (try attachSegment(self, shm_path, name)) return false;
    }
    status.setDetail("store '{s}' was removed and created again repeatedly while attaching; try again", .{name});
    return error.Busy;
}

fn setPath(self: *Store, name: []const u8) [:0]const u8 {
    const shm_path = std.mem.printSentinel(&self.path_buffer, shm_dir ++ shm_prefix ++ "{s}", .{name}, 0) catch unreachable;
    self.path_size_bytes = shm_path.len;
    return shm_path;
}

pub fn shmPath(self: *const Store) [:0]const u8 {
    return self.path_buffer[0..self.path_size_bytes :0];
}

fn createSegment(self: *Store, shm_path: [:0]const u8, name: []const u8, options: OpenOptions) Error!void {
    if (options.capacity_bytes < layout.page_size_bytes) {
        status.setDetail("objectStoreMemory must be at least {d} bytes, got {d}", .{ layout.page_size_bytes, options.capacity_bytes });
        return error.InvalidArgument;
    }
    const capacity_bytes = std.mem.alignForward(u64, options.capacity_bytes, layout.page_size_bytes);
    const slot_count = if (options.slot_count == 0) layout.defaultSlotCount(capacity_bytes) else options.slot_count;
    if (slot_count < layout.slot_count_min or slot_count > layout.slot_count_max) {
        status.setDetail("slot count must be in {d}..{d}, got {d}", .{ layout.slot_count_min, layout.slot_count_max, slot_count });
        return error.InvalidArgument;
    }
    const sections = layout.sections(capacity_bytes, slot_count);
    const fd = sys.open(shm_path, .{ .ACCMODE = .RDWR, .CREAT = true, .EXCL = true, .CLOEXEC = true }, 0o600) catch |err| switch (err) {
        error.Exists => return error.StoreExists,
        error.PermissionDenied => return error.PermissionDenied,
        else => return error.System,
    };
    errdefer {
        sys.close(fd);
        sys.unlink(shm_path) catch {};
    }
    // Attachers take a shared lock for their whole attach; holding it exclusively until the
    // header is ready (and this process registered: `open`) keeps them from reading a half-made
    // segment. Closing `fd` on an error releases it.
    _ = std.os.linux.flock(fd, std.posix.LOCK.EX);
    // tmpfs allocates pages on first touch; a segment larger than what /dev/shm has left would
    // SIGBUS a process later, so refuse it now. (Reserving every page with fallocate would
    // zero them all here, seconds for a big store; the prefault thread does that off-thread.)
    const free_bytes = sys.freeBytes(fd) catch std.math.maxInt(u64);
    if (free_bytes < sections.segment_size_bytes) {
        status.setDetail("/dev/shm has {d} bytes free, store '{s}' needs {d} ({d} for objects, {d} for an index of {d} objects)", .{
            free_bytes, name, sections.segment_size_bytes, capacity_bytes, sections.segment_size_bytes - capacity_bytes, slot_count,
        });
        return error.StoreFull;
    }
    sys.ftruncate(fd, sections.segment_size_bytes) catch |err| {
        status.setDetail("cannot size /dev/shm segment to {d} bytes ({s}); is /dev/shm large enough?", .{ sections.segment_size_bytes, @errorName(err) });
        return if (err == error.NoSpace) error.StoreFull else error.System;
    };
    const base = sys.mapShared(fd, sections.segment_size_bytes) catch return error.System;
    self.fd = fd;
    self.base = base;
    self.segment_size_bytes = sections.segment_size_bytes;
    self.initHeader(sections, capacity_bytes, slot_count, name);
    self.bindSections();
    self.bitmap.reset();
    self.index.initEmpty();
    // The prefault thread (started once open returns) faults these pages in.
    if (options.prefault) self.bitmap.markTouched(@min(capacity_bytes, prefault_data_max_bytes) / layout.block_size_bytes);
    self.header.ready.store(1, .release);
}

fn initHeader(self: *Store, sections: layout.Sections, capacity_bytes: u64, slot_count: u32, name: []const u8) void {
    const h: *layout.Header = @ptrCast(self.base);
    h.* = std.mem.zeroes(layout.Header);
    h.magic = layout.magic;
    h.abi_version = layout.abi_version;
    h.layout_hash = layout.layout_hash;
    h.capacity_bytes = capacity_bytes;
    h.segment_size_bytes = sections.segment_size_bytes;
    h.slot_count = slot_count;
    h.client_count = layout.client_count_max;
    h.clients_offset = sections.clients_offset;
    h.spill_files_offset = sections.spill_files_offset;
    h.bitmap_offset = sections.bitmap_offset;
    h.bitmap_words = sections.bitmap_words;
    h.buckets_offset = sections.buckets_offset;
    h.bucket_count = sections.bucket_count;
    h.slot_bits_offset = sections.slot_bits_offset;
    h.slot_summary_offset = sections.slot_summary_offset;
    h.slots_offset = sections.slots_offset;
    h.extras_offset = sections.extras_offset;
    h.data_offset = sections.data_offset;
    h.creator_uid = sys.getuid();
    h.spill_file_next = .init(1);
    h.name_size_bytes = @intCast(name.len);
    @memcpy(h.name[0..name.len], name);
    self.header = h;
}

/// Maps an existing segment and returns with its shared flock held; false (nothing mapped) if
/// the segment was unlinked before we locked it: its last process removed it.
fn attachSegment(self: *Store, shm_path: [:0]const u8, name: []const u8) Error!bool {
    const fd = sys.open(shm_path, .{ .ACCMODE = .RDWR, .CLOEXEC = true }, 0) catch |err| switch (err) {
        error.NotFound => {
            status.setDetail("no store named '{s}' ({s} does not exist)", .{ name, shm_path });
            return error.StoreNotFound;
        },
        error.PermissionDenied => {
            status.setDetail("cannot open {s}: permission denied (stores are private to their user)", .{shm_path});
            return error.PermissionDenied;
        },
        else => return error.System,
    };
    errdefer sys.close(fd);
    _ = std.os.linux.flock(fd, std.posix.LOCK.SH);
    if ((sys.linkCount(fd) catch return error.System) == 0) {
        sys.close(fd);
        return false;
    }
    const size_bytes = sys.fileSize(fd) catch return error.System;
    if (size_bytes < layout.page_size_bytes) return badStore(shm_path, "it is smaller than a header");
    const base = sys.mapShared(fd, @intCast(size_bytes)) catch return error.System;
    errdefer sys.unmap(base, @intCast(size_bytes));
    const h: *layout.Header = @ptrCast(base);
    if (h.magic != layout.magic) return badStore(shm_path, "its magic number is wrong");
    if (h.abi_version != layout.abi_version or h.layout_hash != layout.layout_hash) {
        status.setDetail("store '{s}' has ABI {d} (layout {x}); this library has ABI {d} (layout {x})", .{ name, h.abi_version, h.layout_hash, layout.abi_version, layout.layout_hash });
        return error.AbiMismatch;
    }
    if (h.segment_size_bytes != size_bytes) return badStore(shm_path, "its size does not match its header");
    if (h.ready.load(.acquire) != 1) return badStore(shm_path, "its creator died before finishing it");
    if (h.slot_count < layout.slot_count_min or h.slot_count > layout.slot_count_max or h.capacity_bytes % layout.page_size_bytes != 0) {
        return badStore(shm_path, "its index or capacity is out of range");
    }
    const expected = layout.sections(h.capacity_bytes, h.slot_count);
    const consistent = expected.data_offset == h.data_offset and expected.bitmap_offset == h.bitmap_offset and
        expected.buckets_offset == h.buckets_offset and expected.bucket_count == h.bucket_count and
        expected.slots_offset == h.slots_offset and expected.extras_offset == h.extras_offset and
        expected.slot_bits_offset == h.slot_bits_offset and expected.slot_summary_offset == h.slot_summary_offset and
        expected.segment_size_bytes == h.segment_size_bytes;
    if (!consistent) return badStore(shm_path, "its section offsets are inconsistent");
    self.fd = fd;
    self.base = base;
    self.segment_size_bytes = @intCast(size_bytes);
    self.header = h;
    self.bindSections();
    return true;
}

fn badStore(shm_path: []const u8, why: []const u8) Error {
    status.setDetail("{s} is not a usable objstore segment: {s}; remove it with `objstore destroy` if no process uses it", .{ shm_path, why });
    return error.BadStore;
}

fn bindSections(self: *Store) void {
    const h = self.header;
    self.clients = self.sectionSlice(layout.Client, h.clients_offset, layout.client_count_max);
    self.index = .{
        .slots = self.sectionSlice(layout.Slot, h.slots_offset, h.slot_count),
        .extras = self.sectionSlice(layout.SlotExtra, h.extras_offset, h.slot_count),
        .buckets = self.sectionSlice(std.atomic.Value(u64), h.buckets_offset, h.bucket_count),
        .slot_bits = self.sectionSlice(u64, h.slot_bits_offset, layout.slotBitsWords(h.slot_count)),
        .slot_summary = self.sectionSlice(u64, h.slot_summary_offset, layout.slotSummaryWords(h.slot_count)),
        .state = &h.index,
    };
    self.spill_files = self.sectionSlice(layout.SpillFile, h.spill_files_offset, layout.spill_file_count_max);
    const words = self.sectionSlice(u64, h.bitmap_offset, h.bitmap_words);
    self.bitmap = BlockBitmap.init(words, h.capacity_bytes / layout.block_size_bytes, &h.alloc_cursor_block, &h.alloc_touched_end_word, touched_grain_words);
}

/// The allocator takes untouched memory 64 MiB at a time (see BlockBitmap.touched_grain_words).
const touched_grain_words: u64 = (64 << 20) / (64 * layout.block_size_bytes);

fn sectionSlice(self: *Store, comptime T: type, offset_bytes: u64, count: u64) []T {
    assert(offset_bytes + count * @sizeOf(T) <= self.segment_size_bytes);
    const first: [*]T = @ptrCast(@alignCast(self.base + offset_bytes));
    return first[0..@intCast(count)];
}

/// Pointer to the first byte of the data region; object offsets count from `base`.
pub fn dataOffset(self: *const Store) u64 {
    return self.header.data_offset;
}

// ---------------------------------------------------------------- clients

/// Takes a client entry; true if it is a dead process's, adopted: its holdings are still to be
/// reclaimed (`reclaimAdopted`, once the flock is released).
fn register(self: *Store) Error!bool {
    const pid = sys.getpid();
    const start_time = sys.processStartTime(pid);
    const free_word = ClientWord.toWord(.{ .state = .free });
    const registering = ClientWord.toWord(.{ .state = .registering });
    for (self.clients, 0..) |*entry, i| {
        if (entry.word.cmpxchgStrong(free_word, registering, .acq_rel, .monotonic) != null) continue;
        self.becomeClient(@intCast(i), pid, start_time);
        return false;
    }
    // Every entry is taken: adopt one whose process died.
    for (self.clients, 0..) |*entry, i| {
        if (self.adopt(entry, @intCast(i), pid, start_time)) return true;
    }
    status.setDetail("store '{s}' already has {d} attached processes", .{ self.storeName(), layout.client_count_max });
    return error.ClientsFull;
}

/// Takes a dead process's entry over as its own reclaimer (so it counts as attached, and no
/// one else reclaims it), with this process's pid. False if the entry is not dead or another
/// process took it over first.
fn adopt(self: *Store, entry: *layout.Client, dead: u32, pid: u32, start_time: u64) bool {
    const word = entry.word.load(.acquire);
    if (ClientWord.of(word).state != .alive or entry.pid == 0 or sys.isAlive(entry.pid, entry.start_time)) return false;
    const own_reclaim = ClientWord.toWord(.{ .state = .reclaiming, .reclaimer = @intCast(dead + 1) });
    if (entry.word.cmpxchgStrong(word, own_reclaim, .acq_rel, .monotonic) != null) return false;
    entry.pid = pid;
    entry.start_time = start_time;
    self.client_index = dead;
    return true;
}

/// Clears what the dead process of an adopted entry held, then makes the entry ours.
fn reclaimAdopted(self: *Store) Error!void {
    const dead = self.client_index;
    const entry = &self.clients[dead];
    // The dead process may have died holding the allocator lock: then it is ours now.
    const took_over = self.header.alloc_lock.load(.acquire) == dead + 1;
    if (!took_over) self.lock();
    self.reclaimClientLocked(dead, took_over);
    self.unlock();
    const own_reclaim = ClientWord.toWord(.{ .state = .reclaiming, .reclaimer = @intCast(dead + 1) });
    const alive = ClientWord.toWord(.{ .state = .alive });
    if (entry.word.cmpxchgStrong(own_reclaim, alive, .acq_rel, .monotonic) != null) {
        // Another process took our reclaim for a dead one's (it read the entry's pid before we
        // wrote ours) and frees the entry: we hold nothing, so nothing is lost but the attach.
        status.setDetail("store '{s}' has {d} attached processes, and the dead one's entry this process took over was taken again; try again", .{ self.storeName(), layout.client_count_max });
        return error.Busy;
    }
    self.sweepOrphans();
}

const ClientWord = layout.ClientWord;

fn becomeClient(self: *Store, client: u32, pid: u32, start_time: u64) void {
    const entry = &self.clients[client];
    entry.pid = pid;
    entry.start_time = start_time;
    entry.word.store(ClientWord.toWord(.{ .state = .alive }), .release);
    self.client_index = client;
}

fn freeClient(self: *Store, client: u32) void {
    const entry = &self.clients[client];
    entry.pid = 0;
    entry.start_time = 0;
    entry.word.store(ClientWord.toWord(.{ .state = .free }), .release);
}

pub fn storeName(self: *const Store) []const u8 {
    return self.header.name[0..self.header.name_size_bytes];
}

/// A process that registered and has not died. An entry mid-registration (pid still 0)
/// counts as alive: its process is a few instructions from filling it in.
fn clientAlive(self: *Store, client: u32) bool {
    const entry = &self.clients[client];
    if (ClientWord.of(entry.word.load(.acquire)).state == .free) return false;
    if (entry.pid == 0) return true;
    return sys.isAlive(entry.pid, entry.start_time);
}

/// Reclaims every dead process's references, pins and unfinished objects; returns how many
/// processes were reclaimed. Cheap when nobody died: one /proc read per attached process.
pub fn maintain(self: *Store) u32 {
    var reclaimed: u32 = 0;
    const me: u8 = @intCast(self.client_index + 1);
    for (self.clients, 0..) |*entry, i| {
        const client: u32 = @intCast(i);
        if (client == self.client_index) continue;
        const word = entry.word.load(.acquire);
        const current = ClientWord.of(word);
        const dead = switch (current.state) {
            // A process that dies mid-registration leaks its entry: a window of a few
            // instructions, not worth a protocol.
            .free, .registering => false,
            .alive => entry.pid != 0 and !sys.isAlive(entry.pid, entry.start_time),
            .reclaiming => current.reclaimer != me and !self.clientAlive(current.reclaimer - 1),
        };
        if (!dead) continue;
        const mine = ClientWord.toWord(.{ .state = .reclaiming, .reclaimer = me });
        if (entry.word.cmpxchgStrong(word, mine, .acq_rel, .monotonic) != null) continue;
        self.lock();
        self.reclaimClientLocked(client, false);
        self.unlock();
        self.freeClient(client);
        reclaimed += 1;
    }
    if (reclaimed > 0) self.sweepOrphans();
    return reclaimed;
}

/// Drops a dead client's holdings and finishes or undoes its transitions, then rebuilds the
/// bitmap from the index, since the dead process may have been inside the allocator. With
/// `held_lock` (it died holding the allocator lock, now ours) the index's slot pool and bucket
/// table may be half updated too: rebuilt and repaired from the slots first.
fn reclaimClientLocked(self: *Store, client: u32, held_lock: bool) void {
    assert(self.header.alloc_lock.load(.monotonic) == self.client_index + 1);
    if (held_lock) {
        self.index.rebuildSlotPool();
        _ = self.index.repairBuckets();
    }
    const bit = @as(u64, 1) << @intCast(client);
    for (self.index.usedSlots(), 0..) |*slot, i| {
        const slot_index: u32 = @intCast(i);
        if (slot.ref_holders.load(.monotonic) & bit != 0) _ = slot.ref_holders.fetchAnd(~bit, .seq_cst);
        if (slot.pin_holders.load(.monotonic) & bit != 0) {
            _ = slot.pin_holders.fetchAnd(~bit, .seq_cst);
        }
        if (slot.actor.load(.acquire) == client + 1) self.undoTransitionLocked(slot_index);
    }
    Spiller.reclaimFiles(self, client);
    RemoteFiles.reclaimClient(self, client);
    self.rebuildBitmapLocked();
}

fn undoTransitionLocked(self: *Store, slot_index: u32) void {
    const slot = &self.index.slots[slot_index];
    const extra = &self.index.extras[slot_index];
    const s = State.of(slot.state.load(.acquire));
    switch (s.tag) {
        .reserved, .writing, .deleting => {
            // Children of an unfinished object may keep one nested count too many: a leak
            // that the orphan sweep cannot see, chosen over freeing a child too early.
            extra.extent_size_bytes = 0;
            self.index.retire(slot_index);
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
        else => {},
    }
    slot.actor.store(0, .release);
    self.bumpSealSequence();
}

/// Returns an object's extent to the allocator (none if it has none); returns its size.
pub fn freeExtentLocked(self: *Store, extra: *layout.SlotExtra) u64 {
    assert(self.header.alloc_lock.load(.monotonic) == self.client_index + 1);
    const size_bytes = extra.extent_size_bytes;
    if (size_bytes == 0) return 0;
    self.bitmap.free(extra.extent_offset_bytes / layout.block_size_bytes, size_bytes / layout.block_size_bytes);
    _ = self.header.used_bytes.fetchSub(size_bytes, .monotonic);
    extra.extent_size_bytes = 0;
    return size_bytes;
}

pub fn rebuildBitmapLocked(self: *Store) void {
    self.bitmap.reset();
    const used = self.index.usedSlots();
    for (used, self.index.extras[0..used.len]) |*slot, *extra| {
        const tag = State.of(slot.state.load(.acquire)).tag;
        const holds_extent = switch (tag) {
            .writing, .sealed, .spilling, .restoring, .deleting, .moving => true,
            else => false,
        };
        if (holds_extent and extra.extent_size_bytes > 0) {
            self.bitmap.markUsed(extra.extent_offset_bytes / layout.block_size_bytes, extra.extent_size_bytes / layout.block_size_bytes);
        }
    }
    self.header.used_bytes.store(self.bitmap.usedBlocks() * layout.block_size_bytes, .monotonic);
}

/// Deletes objects nobody holds: left behind when a holder died.
fn sweepOrphans(self: *Store) void {
    for (self.index.usedSlots(), 0..) |*slot, i| {
        const s = State.of(slot.state.load(.acquire));
        if (s.tag != .sealed and s.tag != .spilled) continue;
        self.tryDelete(@intCast(i), s.generation, 0);
    }
}

// ---------------------------------------------------------------- allocator lock

/// Lock acquires spin this many turns before looking at the clock, then up to lock_spin_ns.
const lock_spins_untimed = 128;
const lock_spin_ns = 20 * std.time.ns_per_us;

pub fn lock(self: *Store) void {
    const me = self.client_index + 1;
    const word = &self.header.alloc_lock;
    var spins: u32 = 0;
    var spin_deadline_ns: u64 = 0;
    // Only under an entry of our own: a free one's holder is taken for dead (see `close`).
    assert(ClientWord.of(self.clients[self.client_index].word.load(.monotonic)).state != .free);
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
        if (spins % 16 == 0 and !self.clientAlive(holder - 1)) {
            if (word.cmpxchgStrong(holder, me, .acquire, .monotonic) == null) {
                self.reclaimClientLocked(holder - 1, true);
                return;
            }
            continue;
        }
        _ = self.header.alloc_lock_waiters.fetchAdd(1, .seq_cst);
        sys.futexWait(word, holder, std.time.ns_per_ms);
        _ = self.header.alloc_lock_waiters.fetchSub(1, .seq_cst);
    }
}

pub fn unlock(self: *Store) void {
    const word = &self.header.alloc_lock;
    assert(word.load(.monotonic) == self.client_index + 1);
    word.store(0, .seq_cst);
    if (self.header.alloc_lock_waiters.load(.seq_cst) > 0) sys.futexWakeAll(word);
}

fn bumpSealSequence(self: *Store) void {
    _ = self.header.seal_sequence.fetchAdd(1, .seq_cst);
    if (self.header.seal_waiters.load(.seq_cst) > 0) sys.futexWakeAll(&self.header.seal_sequence);
}

// ---------------------------------------------------------------- objects

pub const Region = struct { offset_bytes: u64, size_bytes: u64 };

fn clientBit(self: *const Store) u64 {
    return @as(u64, 1) << @intCast(self.client_index);
}

/// Creates an unsealed object of `size_bytes` that holds `children` alive until it is
/// deleted; returns where to write its data. This process holds one reference to it.
pub fn create(self: *Store, id: *const ObjectId, size_bytes: u64, children: []const ObjectId) Error!Region {
    const children_size_bytes = std.mem.alignForward(u64, children.len * layout.id_size_bytes, layout.block_size_bytes);
    const extent_size_bytes = @max(layout.block_size_bytes, children_size_bytes + std.mem.alignForward(u64, size_bytes, layout.block_size_bytes));
    if (extent_size_bytes > self.header.capacity_bytes) {
        status.setDetail("object of {d} bytes is larger than the store's capacity of {d} bytes", .{ size_bytes, self.header.capacity_bytes });
        return error.StoreFull;
    }
    try self.addNested(children);
    errdefer self.dropNested(children, 0);

    var compactor = Compactor{ .store = self };
    // Moved objects may have lost their last holder while moving: check once unlocked.
    defer for (compactor.moved[0..compactor.moved_count]) |moved| {
        self.tryDelete(moved, State.of(self.index.slots[moved].state.load(.acquire)).generation, 0);
    };
    self.lock();
    defer self.unlock();
    const slot_index = try self.index.reserve(id, self.client_index + 1);
    const block_count = extent_size_bytes / layout.block_size_bytes;
    const block = self.bitmap.alloc(block_count) orelse blk: {
        if (compactor.makeRoom(block_count)) {
            if (self.bitmap.alloc(block_count)) |b| break :blk b;
        }
        self.index.release(slot_index);
        status.setDetail("no room for an object of {d} bytes: {d} of {d} bytes in use", .{ size_bytes, self.header.used_bytes.load(.monotonic), self.header.capacity_bytes });
        return error.StoreFull;
    };
    const extra = &self.index.extras[slot_index];
    extra.* = std.mem.zeroes(layout.SlotExtra);
    extra.extent_offset_bytes = block * layout.block_size_bytes;
    extra.extent_size_bytes = extent_size_bytes;
    extra.data_size_bytes = size_bytes;
    extra.child_count = @intCast(children.len);
    extra.lru_tick.store(self.header.lru_clock.fetchAdd(1, .monotonic), .monotonic);
    const children_at: [*]u8 = self.base + self.header.data_offset + extra.extent_offset_bytes;
    @memcpy(children_at[0 .. children.len * layout.id_size_bytes], std.mem.sliceAsBytes(children));

    const slot = &self.index.slots[slot_index];
    slot.ref_holders.store(self.clientBit(), .seq_cst);
    slot.pin_holders.store(0, .seq_cst);
    self.counts[slot_index] = .{ .refs = 1, .pins = 0 };
    self.index.publish(slot_index, .writing);
    _ = self.header.used_bytes.fetchAdd(extent_size_bytes, .monotonic);
    return .{ .offset_bytes = self.header.data_offset + extra.extent_offset_bytes + children_size_bytes, .size_bytes = size_bytes };
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
        if (self.index.addNested(found)) return true;
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
        if (self.index.dropNested(found)) |dropped| return dropped;
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
        switch (self.index.lookup(id)) {
            .found => |found| return found,
            .absent => return null,
            .unstable => std.atomic.spinLoopHint(),
        }
    }
    assert(self.header.alloc_lock.load(.monotonic) != self.client_index + 1); // the holder never sees a move
    self.lock();
    defer self.unlock();
    return switch (self.index.lookup(id)) {
        .found => |found| found,
        .absent => null,
        .unstable => unreachable,
    };
}

fn ownWriting(self: *Store, id: *const ObjectId) Error!Index.Found {
    const found = self.find(id) orelse return error.Absent;
    if (found.state.tag != .writing or self.index.slots[found.slot_index].actor.load(.acquire) != self.client_index + 1) {
        status.setDetail("the object is not being written by this process", .{});
        return error.InvalidArgument;
    }
    return found;
}

pub fn seal(self: *Store, id: *const ObjectId) Error!void {
    const found = try self.ownWriting(id);
    const slot = &self.index.slots[found.slot_index];
    slot.actor.store(0, .release);
    const swapped = slot.state.cmpxchgStrong(found.state.toWord(), found.state.with(.sealed).toWord(), .seq_cst, .monotonic);
    assert(swapped == null); // only the writer moves a writing slot, and nested counts only grow on sealed children.
    self.bumpSealSequence();
}

/// Discards an unsealed object of this process.
pub fn abort(self: *Store, id: *const ObjectId) Error!void {
    const found = try self.ownWriting(id);
    const slot = &self.index.slots[found.slot_index];
    const s = State.of(slot.state.load(.acquire));
    if (slot.state.cmpxchgStrong(s.toWord(), s.with(.deleting).toWord(), .seq_cst, .monotonic) != null) return error.Busy;
    const cleared = slot.ref_holders.fetchAnd(~self.clientBit(), .seq_cst);
    _ = cleared;
    self.counts[found.slot_index] = .{};
    self.finishDelete(found.slot_index, s.with(.deleting), 0);
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
    self.counts[i].pins += 1;
    const extra = &self.index.extras[i];
    extra.lru_tick.store(self.header.lru_clock.fetchAdd(1, .monotonic), .monotonic);
    const children_size_bytes = std.mem.alignForward(u64, @as(u64, extra.child_count) * layout.id_size_bytes, layout.block_size_bytes);
    return .{ .offset_bytes = self.header.data_offset + extra.extent_offset_bytes + children_size_bytes, .size_bytes = extra.data_size_bytes };
}


/// Sets this client's bit, then re-checks the state: a deleter or spiller that moved the
/// state first will see the bit and back off, or we see its state and back off (Dekker).
/// Sets this process's pin bit on a sealed object (Dekker with spillers, movers and deleters:
/// the bit is set, then the state re-read). Transient states are waited out; a spilled one is
/// for the caller to restore.
fn acquirePinBit(self: *Store, slot_index: u32, seen: State) Error!void {
    const slot = &self.index.slots[slot_index];
    var attempt: u32 = 0;
    while (attempt < 100_000) : (attempt += 1) {
        _ = slot.pin_holders.fetchOr(self.clientBit(), .seq_cst);
        const now = State.of(slot.state.load(.seq_cst));
        if (now.generation == seen.generation and now.tag == .sealed) return;
        _ = slot.pin_holders.fetchAnd(~self.clientBit(), .seq_cst);
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
    const slot = &self.index.slots[slot_index];
    var attempt: u32 = 0;
    while (attempt < 100_000) : (attempt += 1) {
        _ = slot.ref_holders.fetchOr(self.clientBit(), .seq_cst);
        const now = State.of(slot.state.load(.seq_cst));
        if (now.generation == seen.generation) switch (now.tag) {
            .sealed, .spilled, .spilling, .restoring, .moving => return,
            else => {},
        };
        _ = slot.ref_holders.fetchAnd(~self.clientBit(), .seq_cst);
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
    const slot = &self.index.slots[i];
    const before = slot.pin_holders.fetchAnd(~self.clientBit(), .seq_cst);
    assert(before & self.clientBit() != 0);
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
    _ = self.index.slots[i].ref_holders.fetchAnd(~self.clientBit(), .seq_cst);
    self.tryDelete(i, found.state.generation, 0);
}

/// Deletes the object if nobody holds it: CAS to deleting, then re-check the holders and
/// back off if a holder appeared meanwhile (its own check will then see `deleting` and retry).
pub fn tryDelete(self: *Store, slot_index: u32, generation: u28, depth: u32) void {
    const slot = &self.index.slots[slot_index];
    var attempt: u32 = 0;
    while (attempt < 64) : (attempt += 1) {
        const s = State.of(slot.state.load(.seq_cst));
        if (s.generation != generation or s.nested != 0) return;
        if (s.tag != .sealed and s.tag != .spilled) return;
        if (slot.ref_holders.load(.seq_cst) != 0 or slot.pin_holders.load(.seq_cst) != 0) return;
        if (slot.state.cmpxchgStrong(s.toWord(), s.with(.deleting).toWord(), .seq_cst, .monotonic) != null) continue;
        slot.actor.store(self.client_index + 1, .release);
        if (slot.ref_holders.load(.seq_cst) != 0 or slot.pin_holders.load(.seq_cst) != 0) {
            slot.actor.store(0, .release);
            slot.state.store(s.toWord(), .seq_cst);
            return;
        }
        self.finishDelete(slot_index, s.with(.deleting), depth);
        return;
    }
}

const nested_depth_max = 32;

fn finishDelete(self: *Store, slot_index: u32, s: State, depth: u32) void {
    assert(s.tag == .deleting);
    const extra = &self.index.extras[slot_index];
    if (extra.child_count > 0 and extra.extent_size_bytes > 0 and depth < nested_depth_max) {
        const at: [*]const ObjectId = @ptrCast(self.base + self.header.data_offset + extra.extent_offset_bytes);
        self.dropNested(at[0..extra.child_count], depth);
    }
    self.lock();
    _ = self.freeExtentLocked(extra);
    // Spilled, or restored with its copy kept: either way the copy goes with the object. Taken
    // before `retire`, after which the slot (and its extra) may be reused.
    const spill_file = extra.spill_file;
    extra.spill_file = 0;
    self.index.retire(slot_index);
    self.unlock();
    self.dropSpillFile(spill_file);
    self.bumpSealSequence();
}

/// Forgets one object's copy in spill file `spill_file` (1-based; 0 for none); the last one
/// deletes the file.
pub fn dropSpillFile(self: *Store, spill_file: u32) void {
    if (spill_file == 0) return;
    assert(spill_file <= layout.spill_file_count_max);
    const file_index = spill_file - 1;
    const file = &self.spill_files[file_index];
    if (file.live_objects.fetchSub(1, .acq_rel) == 1) Spiller.removeFile(self, file_index);
}

/// Waits until the object is sealed (or spilled), up to `timeout_ns`.
pub fn waitSealed(self: *Store, id: *const ObjectId, timeout_ns: u64) Error!void {
    const deadline_ns = sys.nowNs() + timeout_ns;
    while (true) {
        const sequence = self.header.seal_sequence.load(.seq_cst);
        if (self.find(id)) |found| if (isSealed(found.state.tag)) return;
        const now_ns = sys.nowNs();
        if (now_ns >= deadline_ns) return error.Timeout;
        _ = self.header.seal_waiters.fetchAdd(1, .seq_cst);
        // Short slices: a seal by a process that then died must not strand us.
        sys.futexWait(&self.header.seal_sequence, sequence, @min(deadline_ns - now_ns, 50 * std.time.ns_per_ms));
        _ = self.header.seal_waiters.fetchSub(1, .seq_cst);
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
    return self.index.extras[found.slot_index].data_size_bytes;
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
    self.stopPrefault();
    self.dropAllHoldings();
    // Our entry stays ours until we are done: a process that takes the allocator lock (or acts
    // on a slot) under an entry that is free again is taken for dead, and its lock taken over
    // while it is inside (two rebuilds at once marked the same extents twice).
    var removed = false;
    if (remove_if_last) {
        // Under the flock only the question and the removal: no reclaim, no allocator lock,
        // nothing that waits on another process (invariant 14). The dead need no reclaim when
        // the segment goes; when it stays, the survivors' janitors reclaim them.
        _ = std.os.linux.flock(self.fd, std.posix.LOCK.EX);
        if (!self.othersAlive()) {
            Spiller.removeAllFiles(self);
            self.removeDefaultSpillDirectory();
            sys.unlink(self.shmPath()) catch {};
            removed = true;
        }
        self.freeClient(self.client_index);
        _ = std.os.linux.flock(self.fd, std.posix.LOCK.UN);
    } else {
        self.freeClient(self.client_index);
    }
    std.heap.page_allocator.free(self.counts);
    self.unmapAndClose(unmap);
    std.heap.page_allocator.destroy(self);
    return removed;
}

fn dropAllHoldings(self: *Store) void {
    for (self.counts[0..self.index.highWater()], 0..) |*count, i| {
        if (count.refs == 0 and count.pins == 0) continue;
        const slot = &self.index.slots[i];
        const s = State.of(slot.state.load(.acquire));
        if (s.tag == .writing and slot.actor.load(.acquire) == self.client_index + 1) {
            var id: ObjectId = undefined;
            self.index.readId(@intCast(i), &id);
            self.abort(&id) catch {};
            continue;
        }
        if (count.pins > 0) {
            _ = slot.pin_holders.fetchAnd(~self.clientBit(), .seq_cst);
        }
        if (count.refs > 0) _ = slot.ref_holders.fetchAnd(~self.clientBit(), .seq_cst);
        count.* = .{};
        self.tryDelete(@intCast(i), s.generation, 0);
    }
}

/// The spill folder TypeScript names by default, `<tmp>/objstore-spill-<store>`, goes with the
/// store when it is empty (a folder the program named is left alone).
fn removeDefaultSpillDirectory(self: *Store) void {
    const h = self.header;
    const dir = h.spill_dir[0..h.spill_dir_size_bytes];
    const base_name = dir[(std.mem.lastIndexOfScalar(u8, dir, '/') orelse return) + 1 ..];
    if (!std.mem.startsWith(u8, base_name, "objstore-spill-") or !std.mem.eql(u8, base_name["objstore-spill-".len..], self.storeName())) return;
    var buffer: [layout.spill_dir_size_max + 1]u8 = undefined;
    const dir_z = std.mem.printSentinel(&buffer, "{s}", .{dir}, 0) catch return;
    _ = std.os.linux.rmdir(dir_z);
}

/// Distinct living processes attached (one process may hold two entries: its background
/// spiller). A dead process not reclaimed yet is not counted.
pub fn attachedProcesses(self: *Store) u32 {
    var pids: [layout.client_count_max]u32 = undefined;
    var count: u32 = 0;
    for (self.clients, 0..) |*entry, i| {
        if (!self.clientAlive(@intCast(i))) continue;
        const pid = entry.pid;
        if (std.mem.indexOfScalar(u32, pids[0..count], pid) != null) continue;
        pids[count] = pid;
        count += 1;
    }
    return count;
}

/// True if an entry other than ours is a living process's (or one registering).
pub fn othersAlive(self: *Store) bool {
    for (0..self.clients.len) |i| {
        const client: u32 = @intCast(i);
        if (client != self.client_index and self.clientAlive(client)) return true;
    }
    return false;
}

/// Attached entries (each attachment, whatever its process).
pub fn attachedCount(self: *Store) u32 {
    var count: u32 = 0;
    for (self.clients) |*entry| {
        if (ClientWord.of(entry.word.load(.acquire)).state != .free) count += 1;
    }
    return count;
}

/// How many living processes use the store `name`, read without attaching to it (so without
/// touching a store in use). A segment someone holds exclusively (being created, or removed
/// by its last process) counts as used. Errors: StoreNotFound, and the attach errors for a
/// segment this library cannot read.
pub fn countLiveClients(name: []const u8) Error!u32 {
    try validateName(name);
    var path_buffer: [layout.name_size_max + 32]u8 = undefined;
    const shm_path = std.mem.printSentinel(&path_buffer, shm_dir ++ shm_prefix ++ "{s}", .{name}, 0) catch unreachable;
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
    if (size_bytes < clients_end_bytes) return badStore(shm_path, "it is smaller than a header");
    const map_bytes = std.mem.alignForward(usize, clients_end_bytes, layout.page_size_bytes);
    const mapped = std.os.linux.mmap(null, map_bytes, .{ .READ = true }, .{ .TYPE = .SHARED }, fd, 0);
    if (std.os.linux.errno(mapped) != .SUCCESS) return error.System;
    const base: [*]align(layout.page_size_bytes) u8 = @ptrFromInt(mapped);
    defer sys.unmap(base, map_bytes);
    const h: *const layout.Header = @ptrCast(base);
    if (h.magic != layout.magic) return badStore(shm_path, "its magic number is wrong");
    if (h.abi_version != layout.abi_version or h.layout_hash != layout.layout_hash) {
        status.setDetail("store '{s}' has ABI {d} (layout {x}); this library has ABI {d} (layout {x})", .{ name, h.abi_version, h.layout_hash, layout.abi_version, layout.layout_hash });
        return error.AbiMismatch;
    }
    if (h.clients_offset != layout.page_size_bytes) return badStore(shm_path, "its section offsets are inconsistent");
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

fn unmapAndClose(self: *Store, unmap: bool) void {
    if (unmap) sys.unmap(self.base, self.segment_size_bytes) else sys.neuter(self.base, self.segment_size_bytes);
    sys.close(self.fd);
}

// ---------------------------------------------------------------- prefault

fn startPrefault(self: *Store, with_data: bool) void {
    self.prefault_thread = std.Thread.spawn(.{}, prefaultRun, .{ self, with_data }) catch null;
}

fn stopPrefault(self: *Store) void {
    const thread = self.prefault_thread orelse return;
    self.prefault_stop.store(true, .release);
    thread.join();
    self.prefault_thread = null;
}

/// Faults in the metadata before the index (header, clients, spill files, bitmap), then,
/// `with_data`, the data region, low addresses first (where next-fit allocates first), in
/// steps small enough to stop promptly at close.
fn prefaultRun(self: *Store, with_data: bool) void {
    if (!self.populateRange(0, self.header.buckets_offset)) return;
    if (with_data) _ = self.populateRange(self.header.data_offset, @min(self.header.capacity_bytes, prefault_data_max_bytes));
}

/// The data prefaulted at most: puts land low first, so this covers most programs' working
/// set, and a store of 30 % of RAM does not take all of it (and seconds of CPU) at init.
pub const prefault_data_max_bytes: u64 = 1 << 30;

fn populateRange(self: *Store, offset_bytes: u64, size_bytes: u64) bool {
    const step_bytes: u64 = 32 * 1024 * 1024;
    var done_bytes: u64 = 0;
    while (done_bytes < size_bytes) : (done_bytes += step_bytes) {
        if (self.prefault_stop.load(.acquire)) return false;
        const chunk_bytes = @min(step_bytes, size_bytes - done_bytes);
        if (!sys.populateWrite(self.base + offset_bytes + done_bytes, @intCast(chunk_bytes))) return false;
    }
    return true;
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
    const h = self.header;
    var result = Stats{
        .capacity_bytes = h.capacity_bytes,
        .used_bytes = h.used_bytes.load(.monotonic),
        .pinned_bytes = 0,
        .object_count = 0,
        .spilled_bytes = 0,
        .spilled_objects = 0,
        .restored_bytes = h.restored_bytes.load(.monotonic),
        .attached_processes = self.attachedProcesses(),
    };
    const used = self.index.usedSlots();
    for (used, self.index.extras[0..used.len]) |*slot, *extra| {
        const tag = State.of(slot.state.load(.acquire)).tag;
        switch (tag) {
            .empty, .reserved => continue,
            else => result.object_count += 1,
        }
        if (tag == .spilled or tag == .restoring) {
            result.spilled_objects += 1;
            result.spilled_bytes += extra.data_size_bytes;
        }
        if (slot.pin_holders.load(.monotonic) != 0) result.pinned_bytes += extra.data_size_bytes;
    }
    return result;
}
