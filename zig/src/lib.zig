//! The C ABI of libobjstore (declared in `zig/include/objstore.h`). Thin: each export checks
//! its arguments, calls the store, and turns errors into status codes. Sizes cross the ABI
//! as doubles (exact to 2^53) and everything else as 32-bit values, which keeps every call
//! on the fast path of Deno's, Bun's and koffi's FFI.

const std = @import("std");
const assert = std.debug.assert;

const status = @import("status.zig");


pub const Spiller = @import("Spiller.zig");
const BackgroundSpiller = @import("BackgroundSpiller.zig");
const RemoteFiles = @import("RemoteFiles.zig");
const SpillFiles = @import("SpillFiles.zig");
const Channel = @import("Channel.zig");
const exits = @import("exits.zig");
const parent_watch = @import("parent_watch.zig");

/// A panic in the library never blocks on a full stderr while a store's locks are held.
pub const panic = @import("panic.zig").handler;
pub const panicNeverBlocking = @import("panic.zig").panicNeverBlocking;

const Status = status.Status;
const ObjectId = layout.ObjectId;

/// What a caller holds: the store attachment, a result area the FFI shims map once, and
/// this process's spill writer.
const Handle = struct {
    /// Out-values of the last call: [0] offset, [1] size, [2] count or cursor, [3] bytes.
    result: [8]f64 align(64) = @splat(0),
    store: *Store,
    spiller: Spiller,
    background: ?*BackgroundSpiller = null,
};

threadlocal var last_status: Status = .ok;

fn fail(err: status.Error) i32 {
    const code = status.fromError(err);
    last_status = code;
    return @intFromEnum(code);
}

fn succeed() i32 {
    last_status = .ok;
    return 0;
}

fn handleOf(h: ?*anyopaque) *Handle {
    return @ptrCast(@alignCast(h.?));
}

fn idOf(id: [*]const u8) *const ObjectId {
    return @ptrCast(id);
}

/// A byte count from a double: a non-negative integer no larger than 2^53.
fn sizeOf(value: f64) status.Error!u64 {
    if (!(value >= 0) or value > 9007199254740992.0 or @floor(value) != value) {
        status.setDetail("a size must be a whole number of bytes from 0 to 2^53, got {d}", .{value});
        return error.InvalidArgument;
    }
    return @intFromFloat(value);
}

export fn objstore_abi_version() u32 {
    return layout.abi_version;
}

export fn objstore_last_status() i32 {
    return @intFromEnum(last_status);
}

/// Writes "<message>: <detail>" for the last failure into `buffer`; returns its length.
export fn objstore_last_error(buffer: [*]u8, buffer_size_bytes: u32) u32 {
    const text = std.fmt.bufPrint(buffer[0..buffer_size_bytes], "{s}{s}{s}", .{
        status.message(last_status),
        if (status.detail().len > 0) ": " else "",
        status.detail(),
    }) catch return 0;
    return @intCast(text.len);
}

export fn objstore_status_message(code: i32, buffer: [*]u8, buffer_size_bytes: u32) u32 {
    const known = std.enums.fromInt(Status, code) orelse return 0;
    const text = status.message(known);
    const n = @min(text.len, buffer_size_bytes);
    @memcpy(buffer[0..n], text[0..n]);
    return @intCast(n);
}

pub const open_create: u32 = 1;
pub const open_exclusive: u32 = 2;
pub const open_prefault: u32 = 4;

export fn objstore_open(name: [*]const u8, name_size_bytes: u32, flags: u32, capacity_bytes: f64, slot_count: u32) ?*anyopaque {
    status.clearDetail();
    const capacity = sizeOf(capacity_bytes) catch |err| {
        _ = fail(err);
        return null;
    };
    const store = Store.open(name[0..name_size_bytes], .{
        .create = flags & open_create != 0,
        .exclusive = flags & open_exclusive != 0,
        .capacity_bytes = capacity,
        .slot_count = slot_count,
        .prefault = flags & open_prefault != 0,
    }) catch |err| {
        _ = fail(err);
        return null;
    };
    const handle = std.heap.page_allocator.create(Handle) catch {
        _ = store.close(false, true);
        _ = fail(error.System);
        return null;
    };
    handle.* = .{ .store = store, .spiller = Spiller.init(store) };
    handle.result[2] = @floatFromInt(@intFromBool(store.created));
    exits.track(handle, store.storeName(), &closeAtExit);
    last_status = .ok;
    return handle;
}

pub const close_remove_if_last: u32 = 1;
pub const close_unmap: u32 = 2;

/// Returns 1 if this was the last process and the store (and its spill files) was removed.
export fn objstore_close(h: ?*anyopaque, flags: u32) i32 {
    exits.untrack(h.?);
    return @intFromBool(closeHandle(handleOf(h), flags));
}

fn closeHandle(handle: *Handle, flags: u32) bool {
    if (handle.background) |background| background.stopAndDestroy();
    handle.spiller.deinit();
    const removed = handle.store.close(flags & close_remove_if_last != 0, flags & close_unmap != 0);
    std.heap.page_allocator.destroy(handle);
    return removed;
}

/// A store the program left open, closed as it exits (exits.zig): views it may still touch
/// while the runtime winds down read zeros instead of faulting.
fn closeAtExit(h: *anyopaque) void {
    _ = closeHandle(handleOf(h), close_remove_if_last);
}

/// Removes a store that no living process uses (after crashes); refuses one still in use,
/// without attaching to it.
export fn objstore_destroy(name: [*]const u8, name_size_bytes: u32) i32 {
    status.clearDetail();
    const live = Store.countLiveClients(name[0..name_size_bytes]) catch |err| return fail(err);
    if (live > 0) {
        status.setDetail("store '{s}' is still used by {d} other process{s}", .{ name[0..name_size_bytes], live, if (live == 1) "" else "es" });
        return fail(error.Busy);
    }
    // No reclaim: what the dead held goes with the segment (and a store that crashed may be
    // inconsistent: removing it must not depend on reading it).
    const store = Store.open(name[0..name_size_bytes], .{ .create = false, .threads = false }) catch |err| return fail(err);
    const others = store.attachedProcesses() - 1;
    if (others > 0) {
        status.setDetail("store '{s}' is still used by {d} other processes", .{ name[0..name_size_bytes], others });
        _ = store.close(false, true);
        return fail(error.Busy);
    }
    if (!store.close(true, true)) {
        status.setDetail("store '{s}' was attached to by another process while being destroyed", .{name[0..name_size_bytes]});
        return fail(error.Busy);
    }
    return succeed();
}

export fn objstore_result(h: ?*anyopaque) [*]f64 {
    return &handleOf(h).result;
}

export fn objstore_segment_base(h: ?*anyopaque) [*]u8 {
    return handleOf(h).store.base;
}

export fn objstore_segment_size(h: ?*anyopaque) f64 {
    return @floatFromInt(handleOf(h).store.segment_size_bytes);
}

/// Byte offset, in the segment, of the u32 bumped on every seal, abort and delete.
export fn objstore_seal_sequence_offset() u32 {
    return @offsetOf(layout.Header, "seal_sequence");
}

/// Where `bytes` lies within its memory page (its address mod 4096). A caller copying a large
/// buffer into the store places the copy at the same offset within a page: glibc's memcpy runs
/// 3× slower when the destination is a little ahead of the source within a page.
export fn objstore_page_offset(bytes: ?*const anyopaque) u32 {
    return @intCast(@intFromPtr(bytes) % layout.page_size_bytes);
}

export fn objstore_create(h: ?*anyopaque, id: [*]const u8, size_bytes: f64, children: [*]const u8, child_count: u32) i32 {
    const handle = handleOf(h);
    const size = sizeOf(size_bytes) catch |err| return fail(err);
    const child_ids: [*]const ObjectId = @ptrCast(children);
    const region = handle.store.create(idOf(id), size, child_ids[0..child_count]) catch |err| return fail(err);
    handle.result[0] = @floatFromInt(region.offset_bytes);
    handle.result[1] = @floatFromInt(region.size_bytes);
    return succeed();
}

export fn objstore_seal(h: ?*anyopaque, id: [*]const u8) i32 {
    handleOf(h).store.seal(idOf(id)) catch |err| return fail(err);
    return succeed();
}

export fn objstore_abort(h: ?*anyopaque, id: [*]const u8) i32 {
    handleOf(h).store.abort(idOf(id)) catch |err| return fail(err);
    return succeed();
}

export fn objstore_get(h: ?*anyopaque, id: [*]const u8) i32 {
    const handle = handleOf(h);
    const region = handle.store.get(idOf(id)) catch |err| return fail(err);
    handle.result[0] = @floatFromInt(region.offset_bytes);
    handle.result[1] = @floatFromInt(region.size_bytes);
    return succeed();
}

export fn objstore_release(h: ?*anyopaque, id: [*]const u8) i32 {
    handleOf(h).store.release(idOf(id)) catch |err| return fail(err);
    return succeed();
}

export fn objstore_ref_add(h: ?*anyopaque, id: [*]const u8) i32 {
    handleOf(h).store.addRef(idOf(id)) catch |err| return fail(err);
    return succeed();
}

export fn objstore_ref_drop(h: ?*anyopaque, id: [*]const u8) i32 {
    handleOf(h).store.dropRef(idOf(id)) catch |err| return fail(err);
    return succeed();
}

/// result[1] = the object's data size, whether in memory or spilled.
export fn objstore_size(h: ?*anyopaque, id: [*]const u8) i32 {
    const handle = handleOf(h);
    const size = handle.store.sizeOf(idOf(id)) catch |err| return fail(err);
    handle.result[1] = @floatFromInt(size);
    return succeed();
}

/// 0 absent, 1 being written, 2 sealed in memory, 3 spilled.
export fn objstore_contains(h: ?*anyopaque, id: [*]const u8) i32 {
    return @intFromEnum(handleOf(h).store.contains(idOf(id)));
}

export fn objstore_wait_sealed(h: ?*anyopaque, id: [*]const u8, timeout_ms: u32) i32 {
    handleOf(h).store.waitSealed(idOf(id), @as(u64, timeout_ms) * std.time.ns_per_ms) catch |err| return fail(err);
    return succeed();
}

/// Reclaims dead processes' holdings; returns how many processes were reclaimed. Also puts
/// back the exit handling of a signal whose handler the program removed (exits.zig).
export fn objstore_maintain(h: ?*anyopaque) i32 {
    exits.armSignals();
    return @intCast(handleOf(h).store.maintain());
}

/// Writes the pid of each living process attached to the store into `out` at its client
/// index (64 entries; 0 where no living process is, a dead one not reclaimed yet included, by
/// pid and start time); returns how many are alive. A listing's holder bits index this.
export fn objstore_clients(h: ?*anyopaque, out: [*]u32) i32 {
    const store = handleOf(h).store;
    assert(store.segment.clients.len == layout.client_count_max);
    var count: u32 = 0;
    for (store.segment.clients, 0..) |*entry, i| {
        out[i] = 0;
        const word = layout.ClientWord.of(entry.word.load(.acquire));
        if (word.state != .alive or !sys.isAlive(word.pid, entry.start_time)) continue;
        out[i] = word.pid;
        count += 1;
    }
    return @intCast(count);
}

/// Fills `out` with 11 doubles: capacity, used, pinned, objects, spilled bytes, spilled
/// objects, restored bytes, attached processes; then totals since the store was made: bytes
/// spilled, objects spilled, objects restored (restored bytes is a total too).
export fn objstore_stats(h: ?*anyopaque, out: [*]f64) i32 {
    const store = handleOf(h).store;
    const s = store.stats();
    const totals = store.segment.header;
    const values = [11]u64{
        s.capacity_bytes,
        s.used_bytes,
        s.pinned_bytes,
        s.object_count,
        s.spilled_bytes,
        s.spilled_objects,
        s.restored_bytes,
        s.attached_processes,
        totals.spilled_total_bytes.load(.monotonic),
        totals.spilled_total_objects.load(.monotonic),
        totals.restored_objects.load(.monotonic),
    };
    for (values, 0..) |v, i| out[i] = @floatFromInt(v);
    return succeed();
}

/// One object of a listing: 64 bytes, see `objstore_list_record` in objstore.h.
const ListRecord = extern struct {
    id: ObjectId,
    state: u32,
    /// Bit c set: client c (`objstore_clients`' index) holds a reference, or a pin.
    ref_holders: u64,
    pin_holders: u64,
    size_bytes: f64,
    nested: u32,
    child_count: u32,
};
comptime {
    assert(@sizeOf(ListRecord) == 64);
    assert(@offsetOf(ListRecord, "ref_holders") == 32);
}

/// Lists up to `record_capacity` objects from slot `cursor` on; returns the count written and
/// sets result[2] to the next cursor (0 when the listing is complete). With `head_size_bytes`
/// above 0, `heads` gets `head_size_bytes` for each record: the first bytes of the object's
/// value if it is sealed in memory (what kind of value it is), else zeros.
export fn objstore_list(h: ?*anyopaque, cursor: u32, out: [*]u8, record_capacity: u32, heads: ?[*]u8, head_size_bytes: u32) i32 {
    const handle = handleOf(h);
    const index = &handle.store.segment.index;
    const records: [*]ListRecord = @ptrCast(@alignCast(out));
    var written: u32 = 0;
    const high_water = index.highWater();
    var i: u32 = cursor;
    while (i < high_water and written < record_capacity) : (i += 1) {
        const slot = &index.slots[i];
        const word = slot.state.load(.acquire);
        const s = layout.State.of(word);
        const state: u32 = switch (s.tag) {
            .writing => 1,
            .sealed, .spilling, .moving => 2,
            .spilled, .restoring => 3,
            else => continue,
        };
        var r = std.mem.zeroes(ListRecord);
        index.readId(i, &r.id);
        r.state = state;
        r.ref_holders = slot.ref_holders.load(.monotonic);
        r.pin_holders = slot.pin_holders.load(.monotonic);
        r.nested = s.nested;
        r.size_bytes = @floatFromInt(index.extras[i].data_size_bytes);
        r.child_count = index.extras[i].child_count;
        records[written] = r;
        if (head_size_bytes > 0) {
            const head = heads.?[@as(usize, written) * head_size_bytes ..][0..head_size_bytes];
            copyHead(handle.store, i, word, head);
        }
        written += 1;
    }
    handle.result[2] = if (i >= high_water) 0 else @floatFromInt(i);
    return @intCast(written);
}

/// Copies the first bytes of the value of slot `slot_index`, seen in state `seen`, into `out`
/// (zeros past the value, or all zeros if it is not sealed). Read without a pin, so that a
/// listing neither holds objects nor moves them in the LRU order: the bytes are kept only if
/// the slot's state word (tag, generation) and extent are the same after the copy as before it
/// (a seqlock; a spiller, mover or deleter changes one of them before the memory is reused).
/// The extent is bounds-checked, so a torn read costs at most a wrong head, never a fault.
fn copyHead(store: *Store, slot_index: u32, seen: u64, out: []u8) void {
    @memset(out, 0);
    if (layout.State.of(seen).tag != .sealed) return;
    const slot = &store.segment.index.slots[slot_index];
    const extra = &store.segment.index.extras[slot_index];
    const extent_offset_bytes = @atomicLoad(u64, &extra.extent_offset_bytes, .acquire);
    const children_size_bytes = std.mem.alignForward(u64, @as(u64, extra.child_count) * layout.id_size_bytes, layout.block_size_bytes);
    const size_bytes: u64 = @min(out.len, extra.data_size_bytes);
    const start_bytes = extent_offset_bytes +| children_size_bytes;
    if (start_bytes +| size_bytes > store.segment.header.capacity_bytes) return;
    const value = store.base + store.segment.header.data_offset + start_bytes;
    for (out[0..@intCast(size_bytes)], 0..) |*byte, k| byte.* = @atomicLoad(u8, &value[k], .acquire);
    const unchanged = slot.state.load(.acquire) == seen and
        @atomicLoad(u64, &extra.extent_offset_bytes, .acquire) == extent_offset_bytes;
    if (!unchanged) @memset(out, 0);
}

// ---------------------------------------------------------------- spilling

/// Sets the store's spill directory (shared by every process of the store); an empty path
/// disables spilling.
export fn objstore_spill_configure(h: ?*anyopaque, dir: [*]const u8, dir_size_bytes: u32) i32 {
    handleOf(h).spiller.configure(dir[0..dir_size_bytes]) catch |err| return fail(err);
    return succeed();
}

/// Spills least recently used unpinned objects until `target_bytes` are freed (or nothing
/// more can go); result[2] = objects spilled, result[3] = bytes freed.
export fn objstore_spill(h: ?*anyopaque, target_bytes: f64) i32 {
    const handle = handleOf(h);
    const target = sizeOf(target_bytes) catch |err| return fail(err);
    const outcome = handle.spiller.spillLru(target) catch |err| return fail(err);
    handle.result[2] = @floatFromInt(outcome.objects);
    handle.result[3] = @floatFromInt(outcome.bytes);
    return succeed();
}

export fn objstore_spill_object(h: ?*anyopaque, id: [*]const u8) i32 {
    handleOf(h).spiller.spillOne(idOf(id)) catch |err| return fail(err);
    return succeed();
}

/// Brings a spilled object back into memory (once, however many processes ask).
export fn objstore_restore(h: ?*anyopaque, id: [*]const u8) i32 {
    handleOf(h).spiller.restore(idOf(id)) catch |err| return fail(err);
    return succeed();
}

/// Restores a spilled object from its record's region (header, data, padding), fetched from
/// the remote copy of its spill file; checked like a local file (OBJSTORE_CORRUPT if bad).
export fn objstore_restore_region(h: ?*anyopaque, id: [*]const u8, region: [*]const u8, region_size_bytes: f64) i32 {
    status.clearDetail();
    const size = sizeOf(region_size_bytes) catch |err| return fail(err);
    handleOf(h).spiller.restoreFromRegion(idOf(id), region[0..@intCast(size)]) catch |err| return fail(err);
    return succeed();
}

/// Writes where a spilled object's record is into objstore_result: [file state (see
/// layout.FileState), file serial, offset, region size in bytes].
export fn objstore_spill_location(h: ?*anyopaque, id: [*]const u8) i32 {
    const handle = handleOf(h);
    const where = handle.spiller.location(idOf(id)) catch |err| return fail(err);
    handle.result[0] = @floatFromInt(@intFromEnum(where.file_state));
    handle.result[1] = @floatFromInt(where.serial);
    handle.result[2] = @floatFromInt(where.offset_bytes);
    handle.result[3] = @floatFromInt(where.region_size_bytes);
    return succeed();
}

/// Claims a local spill file to copy to remote storage: 1 and [file index, serial, size in
/// bytes] in objstore_result, or 0 if there is none to copy.
export fn objstore_upload_claim(h: ?*anyopaque) i32 {
    const handle = handleOf(h);
    return claimInto(handle, RemoteFiles.claimUpload(&handle.store.segment));
}

/// Ends this process's upload claim; `copied` 1 if the copy is complete (the local file goes).
export fn objstore_upload_finish(h: ?*anyopaque, file_index: u32, serial: f64, copied: u32) i32 {
    const handle = handleOf(h);
    const c = claimOf(handle, file_index, serial, .uploading) orelse return fail(error.InvalidArgument);
    RemoteFiles.finishUpload(&handle.store.segment, c, copied != 0);
    return succeed();
}

/// Claims a remote copy whose objects are gone, to delete: as objstore_upload_claim.
export fn objstore_remote_delete_claim(h: ?*anyopaque) i32 {
    const handle = handleOf(h);
    return claimInto(handle, RemoteFiles.claimDelete(&handle.store.segment));
}

export fn objstore_remote_delete_finish(h: ?*anyopaque, file_index: u32, serial: f64, deleted: u32) i32 {
    const handle = handleOf(h);
    const c = claimOf(handle, file_index, serial, .remote_deleting) orelse return fail(error.InvalidArgument);
    RemoteFiles.finishDelete(&handle.store.segment, c, deleted != 0);
    return succeed();
}

fn claimInto(handle: *Handle, claimed: ?RemoteFiles.Claim) i32 {
    const c = claimed orelse return 0;
    handle.result[0] = @floatFromInt(c.file_index);
    handle.result[1] = @floatFromInt(c.serial);
    handle.result[2] = @floatFromInt(c.size_bytes);
    return 1;
}

/// The claim this process holds on file `file_index`, checked: a wrong argument is an error,
/// not corruption of another process's claim.
fn claimOf(handle: *Handle, file_index: u32, serial: f64, state: layout.FileState) ?RemoteFiles.Claim {
    if (file_index >= layout.spill_file_count_max) {
        status.setDetail("no spill file {d}", .{file_index});
        return null;
    }
    const file = &handle.store.segment.spill_files[file_index];
    const mine = file.actor.load(.acquire) == handle.store.segment.actorId();
    const current = SpillFiles.stateOf(file);
    // An upload whose objects went away meanwhile is still this process's to finish.
    const in_state = current == state or (state == .uploading and current == .upload_orphaned);
    if (!mine or !in_state or @as(f64, @floatFromInt(file.serial)) != serial) {
        status.setDetail("spill file {d} is not claimed by this process", .{file_index});
        return null;
    }
    return .{ .file_index = file_index, .serial = file.serial, .size_bytes = file.size_bytes };
}

/// Starts a thread in this process that spills least recently used objects whenever the
/// store's use passes `threshold_fraction` of its capacity (until 0.1 below it).
export fn objstore_spill_background(h: ?*anyopaque, threshold_fraction: f64) i32 {
    const handle = handleOf(h);
    if (handle.background != null) return succeed();
    handle.background = BackgroundSpiller.start(handle.store.storeName(), threshold_fraction) catch |err| return fail(err);
    return succeed();
}

/// Creates a driver↔worker channel `/dev/shm/<name>` with two rings of `capacity_bytes`.
export fn objstore_channel_create(name: [*]const u8, name_size_bytes: u32, capacity_bytes: u32) ?*anyopaque {
    status.clearDetail();
    const channel = Channel.create(name[0..name_size_bytes], capacity_bytes) catch |err| {
        _ = fail(err);
        return null;
    };
    return boxChannel(channel);
}

/// Maps a channel the driver created (the worker's side).
export fn objstore_channel_open(name: [*]const u8, name_size_bytes: u32) ?*anyopaque {
    status.clearDetail();
    const channel = Channel.open(name[0..name_size_bytes]) catch |err| {
        _ = fail(err);
        return null;
    };
    return boxChannel(channel);
}

fn boxChannel(channel: Channel) ?*anyopaque {
    const box = std.heap.c_allocator.create(Channel) catch {
        channel.close();
        _ = fail(error.System);
        return null;
    };
    box.* = channel;
    last_status = .ok;
    return box;
}

fn channelOf(c: ?*anyopaque) *Channel {
    return @ptrCast(@alignCast(c.?));
}

/// Removes the channel's name; mappings stay valid. A missing name is not an error.
export fn objstore_channel_unlink(name: [*]const u8, name_size_bytes: u32) i32 {
    status.clearDetail();
    Channel.unlink(name[0..name_size_bytes]) catch |err| return fail(err);
    return succeed();
}

export fn objstore_channel_close(c: ?*anyopaque) i32 {
    if (c == null) return fail(error.InvalidArgument);
    const channel = channelOf(c);
    channel.close();
    std.heap.c_allocator.destroy(channel);
    return succeed();
}

pub const channel_wake_peer: i32 = 1;
pub const channel_blocked: i32 = 2;
/// Results of send and receive: the byte count times 4, plus the flags above, or a negated
/// status. Counts stay below 2^28 so that fits an i32.
const channel_count_max_bytes: u32 = 1 << 28;

fn sideOf(side: u32) ?Channel.Side {
    return if (side <= 1) @enumFromInt(side) else null;
}

/// Writes what fits of `bytes` into `side`'s outbound ring: written × 4 | wake_peer | blocked.
export fn objstore_channel_send(c: ?*anyopaque, side: u32, bytes: [*]const u8, size_bytes: u32) i32 {
    const caller = sideOf(side) orelse return -fail(error.InvalidArgument);
    if (size_bytes > channel_count_max_bytes) return -fail(error.InvalidArgument);
    const sent = channelOf(c).send(caller, bytes[0..size_bytes]);
    const flags = @as(i32, @intFromBool(sent.wake_receiver)) * channel_wake_peer + @as(i32, @intFromBool(sent.blocked)) * channel_blocked;
    return @as(i32, @intCast(sent.written_bytes)) * 4 + flags;
}

/// Reads up to `capacity_bytes` from `side`'s inbound ring, spinning up to `spin_us` for
/// something to arrive: read × 4 | wake_peer.
export fn objstore_channel_receive(c: ?*anyopaque, side: u32, out: [*]u8, capacity_bytes: u32, spin_us: u32) i32 {
    const caller = sideOf(side) orelse return -fail(error.InvalidArgument);
    if (capacity_bytes > channel_count_max_bytes) return -fail(error.InvalidArgument);
    const received = channelOf(c).receive(caller, out[0..capacity_bytes], @as(u64, spin_us) * std.time.ns_per_us);
    return @as(i32, @intCast(received.read_bytes)) * 4 + @as(i32, @intFromBool(received.wake_sender)) * channel_wake_peer;
}

/// 1 if parked (senders now ring the doorbell); 0 if something waits in the ring already.
export fn objstore_channel_park(c: ?*anyopaque, side: u32) i32 {
    const caller = sideOf(side) orelse return -fail(error.InvalidArgument);
    return @intFromBool(channelOf(c).park(caller));
}

/// Un-parks: the caller is about to spin on its inbound ring.
export fn objstore_channel_listen(c: ?*anyopaque, side: u32) i32 {
    const caller = sideOf(side) orelse return fail(error.InvalidArgument);
    channelOf(c).listen(caller);
    return succeed();
}

/// Writes the doorbell byte to `fd` (a full pipe drops it: its reader is about to read anyway).
export fn objstore_doorbell_ring(fd: i32) i32 {
    status.clearDetail();
    Channel.ringDoorbell(fd) catch |err| return fail(err);
    return succeed();
}

/// Ends this process soon after `parent_pid`, its parent now, dies: after `grace_ms` SIGTERM,
/// after as long again SIGKILL (parent_watch.zig). For worker processes; once per process.
export fn objstore_watch_parent(parent_pid: i32, grace_ms: u32) i32 {
    status.clearDetail();
    if (parent_pid <= 0 or grace_ms == 0) return fail(error.InvalidArgument);
    parent_watch.watch(parent_pid, grace_ms) catch |err| switch (err) {
        error.NotParent => {
            status.setDetail("process {d} is not this process's parent", .{parent_pid});
            return fail(error.InvalidArgument);
        },
        error.System => return fail(error.System),
    };
    return succeed();
}

/// 1 = io_uring, 2 = pwritev.
export fn objstore_io_backend(h: ?*anyopaque) i32 {
    return @intFromEnum(handleOf(h).spiller.backend());
}

// ---------------------------------------------------------------- transfer between nodes

const StoreEndpoint = @import("transfer/StoreEndpoint.zig");
const TransferServer = @import("transfer/Server.zig");
const Puller = @import("transfer/Puller.zig");
const transfer_socket = @import("transfer/socket.zig");
const transfer_auth = @import("transfer/auth.zig");

/// Bytes per source in `objstore_pull_start`'s list: an IPv4 address, then a port (big-endian).
const source_record_size_bytes = 6;

fn endpointOf(e: ?*anyopaque) *StoreEndpoint {
    return @ptrCast(@alignCast(e.?));
}

fn tokenOf(token: [*]const u8, token_size_bytes: u32) status.Error![]const u8 {
    if (token_size_bytes == 0 or token_size_bytes > transfer_auth.token_size_max) {
        status.setDetail("the cluster token must be 1 to {d} bytes, got {d}", .{ transfer_auth.token_size_max, token_size_bytes });
        return error.InvalidArgument;
    }
    return token[0..token_size_bytes];
}

/// Attaches the transfer threads to store `name` (an attachment of their own).
export fn objstore_endpoint_open(name: [*]const u8, name_size_bytes: u32) ?*anyopaque {
    status.clearDetail();
    const endpoint = StoreEndpoint.open(name[0..name_size_bytes]) catch |err| {
        _ = fail(err);
        return null;
    };
    _ = succeed();
    return endpoint;
}

/// After every server and pull of the endpoint has ended.
export fn objstore_endpoint_close(e: ?*anyopaque) i32 {
    endpointOf(e).close();
    return succeed();
}

/// Gives up the endpoint's reference on a pulled object (take your own first).
export fn objstore_endpoint_hand_over(e: ?*anyopaque, id: [*]const u8) i32 {
    status.clearDetail();
    endpointOf(e).handOver(idOf(id)) catch |err| return fail(err);
    return succeed();
}

/// Serves the endpoint's store to nodes presenting `token`, on `ip` (host order; 0 = every
/// address) and `port` (0 = a free one: see `objstore_serve_port`).
export fn objstore_serve(e: ?*anyopaque, ip: u32, port: u32, token: [*]const u8, token_size_bytes: u32) ?*anyopaque {
    status.clearDetail();
    const server = serve(endpointOf(e), ip, port, token, token_size_bytes) catch |err| {
        _ = fail(err);
        return null;
    };
    _ = succeed();
    return server;
}

fn serve(endpoint: *StoreEndpoint, ip: u32, port: u32, token: [*]const u8, token_size_bytes: u32) status.Error!*TransferServer {
    const checked_token = try tokenOf(token, token_size_bytes);
    if (port > std.math.maxInt(u16)) {
        status.setDetail("port {d} is out of range (0 to 65535)", .{port});
        return error.InvalidArgument;
    }
    var ip_bytes: [4]u8 = undefined;
    std.mem.writeInt(u32, &ip_bytes, ip, .big);
    const address: transfer_socket.Address = .{ .ip = ip_bytes, .port = @intCast(port) };
    return TransferServer.start(std.heap.page_allocator, address, checked_token, endpoint.source(), .{}) catch |err| switch (err) {
        error.AddressUnavailable => {
            status.setDetail("cannot listen on {d}.{d}.{d}.{d}:{d}: the address is taken or not this machine's", .{ ip_bytes[0], ip_bytes[1], ip_bytes[2], ip_bytes[3], port });
            return error.InvalidArgument;
        },
        error.InvalidArgument => error.InvalidArgument,
        else => error.System,
    };
}

export fn objstore_serve_port(server: ?*anyopaque) u32 {
    const s: *TransferServer = @ptrCast(@alignCast(server.?));
    return s.port;
}

/// Stops serving: disconnects every peer and joins every thread.
export fn objstore_serve_stop(server: ?*anyopaque) i32 {
    const s: *TransferServer = @ptrCast(@alignCast(server.?));
    s.stop();
    return succeed();
}

/// One pull, on a thread of its own: started by `objstore_pull_start`, watched with
/// `objstore_pull_done`, ended by `objstore_pull_finish`.
const Pull = struct {
    endpoint: *StoreEndpoint,
    id: ObjectId,
    sources: [Puller.source_count_max]transfer_socket.Address,
    source_count: u32,
    token: [transfer_auth.token_size_max]u8,
    token_size_bytes: u32,
    connection_count: u32,
    wait_ms: u32,
    done: std.atomic.Value(bool) = .init(false),
    outcome: Puller.Error!u64 = 0,
    /// The object's size, once a source told it (0 before).
    size_bytes: u64 = 0,
    thread: std.Thread = undefined,

    fn run(pull: *Pull) void {
        pull.outcome = Puller.pull(&pull.id, .{
            .sources = pull.sources[0..pull.source_count],
            .token = pull.token[0..pull.token_size_bytes],
            .connection_count = pull.connection_count,
            .wait_ms = pull.wait_ms,
            .size_out = &pull.size_bytes,
        }, pull.endpoint.sink());
        pull.done.store(true, .release);
    }
};

/// Pulls object `id` into the endpoint's store from the first of `source_count` nodes (6 bytes
/// each: IPv4 address, port, big-endian) that holds it, over up to `connection_count`
/// connections; a source may wait `wait_ms` for the object to be sealed. The object appears
/// in the store as being written at once (other processes wait for its seal as for any).
export fn objstore_pull_start(e: ?*anyopaque, id: [*]const u8, sources: [*]const u8, source_count: u32, token: [*]const u8, token_size_bytes: u32, connection_count: u32, wait_ms: u32) ?*anyopaque {
    status.clearDetail();
    const pull = startPull(endpointOf(e), idOf(id), sources, source_count, token, token_size_bytes, connection_count, wait_ms) catch |err| {
        _ = fail(err);
        return null;
    };
    _ = succeed();
    return pull;
}

fn startPull(endpoint: *StoreEndpoint, id: *const ObjectId, sources: [*]const u8, source_count: u32, token: [*]const u8, token_size_bytes: u32, connection_count: u32, wait_ms: u32) status.Error!*Pull {
    const checked_token = try tokenOf(token, token_size_bytes);
    if (source_count == 0 or source_count > Puller.source_count_max) {
        status.setDetail("a pull needs 1 to {d} sources, got {d}", .{ Puller.source_count_max, source_count });
        return error.InvalidArgument;
    }
    if (connection_count == 0 or connection_count > Puller.connection_count_max) {
        status.setDetail("a pull uses 1 to {d} connections, got {d}", .{ Puller.connection_count_max, connection_count });
        return error.InvalidArgument;
    }
    const pull = std.heap.page_allocator.create(Pull) catch return error.System;
    errdefer std.heap.page_allocator.destroy(pull);
    pull.* = .{
        .endpoint = endpoint,
        .id = id.*,
        .sources = undefined,
        .source_count = source_count,
        .token = undefined,
        .token_size_bytes = token_size_bytes,
        .connection_count = connection_count,
        .wait_ms = wait_ms,
    };
    for (pull.sources[0..source_count], 0..) |*address, i| {
        const record = sources[i * source_record_size_bytes ..][0..source_record_size_bytes];
        address.* = .{ .ip = record[0..4].*, .port = std.mem.readInt(u16, record[4..6], .big) };
    }
    @memcpy(pull.token[0..checked_token.len], checked_token);
    pull.thread = std.Thread.spawn(.{}, Pull.run, .{pull}) catch return error.System;
    return pull;
}

/// 1 once the pull has ended (call `objstore_pull_finish`), else 0.
export fn objstore_pull_done(p: ?*anyopaque) u32 {
    const pull: *Pull = @ptrCast(@alignCast(p.?));
    return @intFromBool(pull.done.load(.acquire));
}

/// Waits for the pull's thread, frees the pull, and says how it ended: ok (result [1] = the
/// object's size), absent (no source holds it), not_sealed, exists (this store has the object
/// or is pulling it already: wait for its seal), store_full, corrupt (a chunk failed its
/// checksum on every attempt), cluster_auth (a token mismatch), unavailable (every source
/// failed).
export fn objstore_pull_finish(p: ?*anyopaque, out: [*]f64) i32 {
    status.clearDetail();
    const pull: *Pull = @ptrCast(@alignCast(p.?));
    pull.thread.join();
    const outcome = pull.outcome;
    // Also on failure: a full store's caller makes this much room and pulls again.
    out[1] = @floatFromInt(pull.size_bytes);
    std.heap.page_allocator.destroy(pull);
    const size_bytes = outcome catch |err| return fail(pullError(err));
    assert(out[1] == @as(f64, @floatFromInt(size_bytes)));
    return succeed();
}

fn pullError(err: Puller.Error) status.Error {
    return switch (err) {
        error.Absent => error.Absent,
        error.NotSealed => error.NotSealed,
        error.Exists => error.Exists,
        error.StoreFull => error.StoreFull,
        error.Corrupt => error.Corrupt,
        error.InvalidArgument => error.InvalidArgument,
        error.TokenRefused, error.PeerNotAuthenticated, error.NotAPeer => blk: {
            status.setDetail("a node refused this node's cluster token, or did not prove it holds it ({s})", .{@errorName(err)});
            break :blk error.ClusterAuth;
        },
        error.Unavailable, error.ProtocolViolation, error.Closed, error.TimedOut, error.Refused, error.AddressUnavailable, error.System => blk: {
            status.setDetail("no node holding the object could send it (last failure: {s})", .{@errorName(err)});
            break :blk error.Unavailable;
        },
    };
}

test {
    _ = @import("sys.zig");
    _ = @import("layout.zig");
    _ = @import("BlockBitmap.zig");
    _ = @import("Index.zig");
    _ = @import("spill_io.zig");
    _ = @import("store_test.zig");
    _ = @import("Progress.zig");
    _ = @import("RemoteFiles.zig");
    _ = @import("SpillFiles.zig");
    _ = @import("Segment.zig");
    _ = @import("Clients.zig");
    _ = @import("shm_names.zig");
    _ = @import("Channel.zig");
    _ = @import("transfer/socket.zig");
    _ = @import("transfer/auth.zig");
    _ = @import("transfer/transfer_test.zig");
    _ = @import("transfer/StoreEndpoint.zig");
    _ = @import("Compactor.zig");
    _ = @import("BackgroundSpiller.zig");
    _ = @import("exits.zig");
    _ = @import("parent_watch.zig");
    _ = @import("panic.zig");
}

/// For the native stress tests and benchmarks, which drive the store without the C ABI.
pub const Store = @import("Store.zig");
pub const layout = @import("layout.zig");
pub const Index = @import("Index.zig");
pub const sys = @import("sys.zig");
