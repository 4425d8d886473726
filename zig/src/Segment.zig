//! The shared segment as one attachment sees it: the file in /dev/shm, its mapping, the header
//! and a view of each section (client table, spill-file table, allocator bitmap, index), and
//! which client entry is this attachment's. Making a segment (`create`), checking one another
//! process made (`attach`), the prefault thread, and the arena's bookkeeping that spans the
//! bitmap and the index (an extent freed, the bitmap rebuilt from the index).
//!
//! The modules that act on the shared state take a `*Segment`: the client table and the
//! allocator lock (Clients.zig), the spill-file table (SpillFiles.zig, RemoteFiles.zig), the
//! compactor. The object lifecycle and this process's private counts are Store.zig's.

const std = @import("std");
const assert = std.debug.assert;
const layout = @import("layout.zig");
const sys = @import("sys.zig");
const status = @import("status.zig");
const shm_names = @import("shm_names.zig");
const BlockBitmap = @import("BlockBitmap.zig");
const Index = @import("Index.zig");

const Segment = @This();
const Error = status.Error;
const State = layout.State;

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

/// Memory the holder of the allocator lock works in, sized when the segment is mapped so that
/// nothing is allocated while the lock is held (a process that dies there must not have been
/// inside malloc, and an allocation that fails must not cut a repair short). Private to this
/// attachment; its pages are touched only when used.
pub const Scratch = struct {
    /// Compactor: per bitmap word, the largest occupant's size in blocks.
    largest: []u32,
    /// Compactor: the sliding window's monotonic deque of bitmap word indexes.
    deque: []u64,
    /// Index.repairBuckets: one bit per slot, the entries seen.
    seen: []u64,
};

fd: i32,
base: [*]align(layout.page_size_bytes) u8,
size_bytes: usize,
header: *layout.Header,
clients: []layout.Client,
index: Index,
spill_files: []layout.SpillFile,
bitmap: BlockBitmap,
scratch: Scratch,
/// This attachment's entry in the client table (set by Clients.register). Its number + 1 is
/// what it writes as the actor of a transition and as the allocator lock's holder.
client_index: u32,
/// The entry's incarnation while it is this attachment's (layout.ClientWord), written into the
/// allocator lock's word with the client index.
incarnation: u16,
path_buffer: [shm_names.store_path_size_max]u8,
path_size_bytes: usize,
prefault_thread: ?std.Thread,
prefault_stop: std.atomic.Value(bool),

/// Maps store `name`'s segment, creating it if `options` say so, and returns with its flock
/// held (exclusive when it created it, shared when it attached); true if it created it. A
/// segment removed by its last process between our open and our lock is not attached to: we
/// start over. The client entry is still to be taken (Clients.register).
pub fn map(self: *Segment, name: []const u8, options: OpenOptions) Error!bool {
    self.prefault_thread = null;
    self.prefault_stop = .init(false);
    self.client_index = layout.client_count_max; // none yet
    self.incarnation = 0;
    const shm_path = shm_names.storePath(&self.path_buffer, name);
    self.path_size_bytes = shm_path.len;
    var attempt: u32 = 0;
    while (attempt < 8) : (attempt += 1) {
        if (options.create) {
            if (self.create(shm_path, name, options)) |_| {
                return true;
            } else |err| switch (err) {
                error.StoreExists => if (options.exclusive) {
                    status.setDetail("store '{s}' already exists", .{name});
                    return err;
                },
                else => return err,
            }
        }
        if (try self.attach(shm_path, name)) return false;
    }
    status.setDetail("store '{s}' was removed and created again repeatedly while attaching; try again", .{name});
    return error.Busy;
}

pub fn shmPath(self: *const Segment) [:0]const u8 {
    return self.path_buffer[0..self.path_size_bytes :0];
}

pub fn storeName(self: *const Segment) []const u8 {
    return self.header.name[0..self.header.name_size_bytes];
}

fn create(self: *Segment, shm_path: [:0]const u8, name: []const u8, options: OpenOptions) Error!void {
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
    // header is ready (and this process registered: `Store.open`) keeps them from reading a
    // half-made segment. Closing `fd` on an error releases it.
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
    errdefer sys.unmap(base, sections.segment_size_bytes);
    self.fd = fd;
    self.base = base;
    self.size_bytes = sections.segment_size_bytes;
    self.initHeader(sections, capacity_bytes, slot_count, name);
    try self.bindSections();
    self.bitmap.reset();
    self.index.initEmpty();
    // The prefault thread (started once open returns) faults these pages in.
    if (options.prefault) self.bitmap.markTouched(@min(capacity_bytes, prefault_data_max_bytes) / layout.block_size_bytes);
    self.header.ready.store(1, .release);
}

fn initHeader(self: *Segment, sections: layout.Sections, capacity_bytes: u64, slot_count: u32, name: []const u8) void {
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
fn attach(self: *Segment, shm_path: [:0]const u8, name: []const u8) Error!bool {
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
    try checkHeader(h, shm_path, name, size_bytes);
    self.fd = fd;
    self.base = base;
    self.size_bytes = @intCast(size_bytes);
    self.header = h;
    try self.bindSections();
    return true;
}

/// Refuses a segment this library cannot read: another ABI, or a header whose sections are
/// not where (capacity, slot count) puts them.
fn checkHeader(h: *const layout.Header, shm_path: []const u8, name: []const u8, size_bytes: u64) Error!void {
    if (h.magic != layout.magic) return badStore(shm_path, "its magic number is wrong");
    if (h.abi_version != layout.abi_version or h.layout_hash != layout.layout_hash) return abiMismatch(h, name);
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
}

pub fn abiMismatch(h: *const layout.Header, name: []const u8) Error {
    status.setDetail("store '{s}' has ABI {d} (layout {x}); this library has ABI {d} (layout {x})", .{ name, h.abi_version, h.layout_hash, layout.abi_version, layout.layout_hash });
    return error.AbiMismatch;
}

pub fn badStore(shm_path: []const u8, why: []const u8) Error {
    status.setDetail("{s} is not a usable objstore segment: {s}; remove it with `objstore destroy` if no process uses it", .{ shm_path, why });
    return error.BadStore;
}

/// Points the section views at the mapping and sizes the scratch space from them.
fn bindSections(self: *Segment) Error!void {
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
    self.scratch = allocScratch(words.len, self.index.slot_bits.len) catch {
        status.setDetail("cannot reserve {d} bytes of scratch space for store '{s}'", .{ scratchSizeBytes(words.len, self.index.slot_bits.len), self.storeName() });
        return error.System;
    };
}

fn allocScratch(bitmap_words: usize, slot_bits_words: usize) error{OutOfMemory}!Scratch {
    const allocator = std.heap.page_allocator;
    const largest = try allocator.alloc(u32, bitmap_words);
    errdefer allocator.free(largest);
    const deque = try allocator.alloc(u64, bitmap_words);
    errdefer allocator.free(deque);
    const seen = try allocator.alloc(u64, slot_bits_words);
    return .{ .largest = largest, .deque = deque, .seen = seen };
}

fn scratchSizeBytes(bitmap_words: usize, slot_bits_words: usize) usize {
    return bitmap_words * (@sizeOf(u32) + @sizeOf(u64)) + slot_bits_words * @sizeOf(u64);
}

fn freeScratch(self: *Segment) void {
    const allocator = std.heap.page_allocator;
    allocator.free(self.scratch.largest);
    allocator.free(self.scratch.deque);
    allocator.free(self.scratch.seen);
}

/// The allocator takes untouched memory 64 MiB at a time (see BlockBitmap.touched_grain_words).
const touched_grain_words: u64 = (64 << 20) / (64 * layout.block_size_bytes);

fn sectionSlice(self: *Segment, comptime T: type, offset_bytes: u64, count: u64) []T {
    assert(offset_bytes + count * @sizeOf(T) <= self.size_bytes);
    const first: [*]T = @ptrCast(@alignCast(self.base + offset_bytes));
    return first[0..@intCast(count)];
}

/// Unmaps the segment (or, without `unmap`, replaces it by private zero pages: invariant 11)
/// and closes its file. The prefault thread must be stopped.
pub fn unmapAndClose(self: *Segment, unmap: bool) void {
    assert(self.prefault_thread == null);
    self.freeScratch();
    if (unmap) sys.unmap(self.base, self.size_bytes) else sys.neuter(self.base, self.size_bytes);
    sys.close(self.fd);
}

pub fn unlockFile(self: *Segment) void {
    _ = std.os.linux.flock(self.fd, std.posix.LOCK.UN);
}

pub fn lockFileExclusive(self: *Segment) void {
    _ = std.os.linux.flock(self.fd, std.posix.LOCK.EX);
}

// ---------------------------------------------------------------- identity

/// What this attachment writes as an actor or lock holder: its client entry's number + 1.
pub fn actorId(self: *const Segment) u8 {
    assert(self.client_index < layout.client_count_max);
    return @intCast(self.client_index + 1);
}

/// This attachment's bit in a slot's `ref_holders` and `pin_holders`.
pub fn clientBit(self: *const Segment) u64 {
    assert(self.client_index < layout.client_count_max);
    return @as(u64, 1) << @intCast(self.client_index);
}

/// What this attachment writes into the allocator lock while it holds it (layout.LockWord).
pub fn lockWord(self: *const Segment) u32 {
    return layout.LockWord.toWord(.{ .holder = self.actorId(), .incarnation = self.incarnation });
}

/// True if this attachment holds the allocator lock (Clients.lock).
pub fn lockHeld(self: *const Segment) bool {
    return self.header.alloc_lock.load(.monotonic) == self.lockWord();
}

/// Wakes every process waiting for a seal, an abort, a delete or a restore to finish.
pub fn bumpSealSequence(self: *Segment) void {
    _ = self.header.seal_sequence.fetchAdd(1, .seq_cst);
    if (self.header.seal_waiters.load(.seq_cst) > 0) sys.futexWakeAll(&self.header.seal_sequence);
}

// ---------------------------------------------------------------- the arena's bookkeeping

/// Returns an object's extent to the allocator (none if it has none); returns its size.
pub fn freeExtentLocked(self: *Segment, extra: *layout.SlotExtra) u64 {
    assert(self.lockHeld());
    const size_bytes = extra.extent_size_bytes;
    if (size_bytes == 0) return 0;
    assert(size_bytes % layout.block_size_bytes == 0);
    assert(extra.extent_offset_bytes + size_bytes <= self.header.capacity_bytes);
    assert(self.header.used_bytes.load(.monotonic) >= size_bytes);
    self.bitmap.free(extra.extent_offset_bytes / layout.block_size_bytes, size_bytes / layout.block_size_bytes);
    _ = self.header.used_bytes.fetchSub(size_bytes, .monotonic);
    extra.extent_size_bytes = 0;
    return size_bytes;
}

/// Marks in the bitmap exactly the extents the index says are held, and recounts the memory
/// in use: the bitmap is a cache of the index.
pub fn rebuildBitmapLocked(self: *Segment) void {
    assert(self.lockHeld());
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

// ---------------------------------------------------------------- prefault

pub fn startPrefault(self: *Segment, with_data: bool) void {
    assert(self.prefault_thread == null);
    self.prefault_thread = std.Thread.spawn(.{}, prefaultRun, .{ self, with_data }) catch null;
}

pub fn stopPrefault(self: *Segment) void {
    const thread = self.prefault_thread orelse return;
    self.prefault_stop.store(true, .release);
    thread.join();
    self.prefault_thread = null;
}

/// Faults in the metadata before the index (header, clients, spill files, bitmap), then,
/// `with_data`, the data region, low addresses first (where next-fit allocates first), in
/// steps small enough to stop promptly at close.
fn prefaultRun(self: *Segment, with_data: bool) void {
    if (!self.populateRange(0, self.header.buckets_offset)) return;
    if (with_data) _ = self.populateRange(self.header.data_offset, @min(self.header.capacity_bytes, prefault_data_max_bytes));
}

/// The data prefaulted at most: puts land low first, so this covers most programs' working
/// set, and a store of 30 % of RAM does not take all of it (and seconds of CPU) at init.
pub const prefault_data_max_bytes: u64 = 1 << 30;

fn populateRange(self: *Segment, offset_bytes: u64, size_bytes: u64) bool {
    const step_bytes: u64 = 32 * 1024 * 1024;
    var done_bytes: u64 = 0;
    while (done_bytes < size_bytes) : (done_bytes += step_bytes) {
        if (self.prefault_stop.load(.acquire)) return false;
        const chunk_bytes = @min(step_bytes, size_bytes - done_bytes);
        if (!sys.populateWrite(self.base + offset_bytes + done_bytes, @intCast(chunk_bytes))) return false;
    }
    return true;
}
