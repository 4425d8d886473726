//! Single-process tests of the store's object lifecycle; the multi-process ones are in
//! `zig/tests/stress.zig`.

const std = @import("std");
const testing = std.testing;
const layout = @import("layout.zig");
const sys = @import("sys.zig");
const Store = @import("Store.zig");
const Spiller = @import("Spiller.zig");
const SpillFiles = @import("SpillFiles.zig");
const status = @import("status.zig");

var name_counter: u32 = 0;

fn uniqueName(buffer: []u8) []const u8 {
    name_counter += 1;
    return std.fmt.bufPrint(buffer, "unit-{d}-{d}", .{ sys.getpid(), name_counter }) catch unreachable;
}

fn openFresh(buffer: []u8, capacity_bytes: u64) !*Store {
    return Store.open(uniqueName(buffer), .{ .capacity_bytes = capacity_bytes, .exclusive = true, .prefault = false });
}

fn idOf(k: u64) layout.ObjectId {
    var id: layout.ObjectId = @splat(0xab);
    std.mem.writeInt(u64, id[0..8], k, .little);
    return id;
}

/// A 1 MiB store spilling to `/tmp/objstore-unit-<what>-<pid>`. Opened in place: `spiller`
/// points at `store`, and `dir` into `dir_buffer`.
const SpillFixture = struct {
    name_buffer: [64]u8,
    dir_buffer: [128]u8,
    store: *Store,
    dir: [:0]const u8,
    spiller: Spiller,

    fn open(self: *SpillFixture, what: []const u8) !void {
        self.store = try openFresh(&self.name_buffer, 1 << 20);
        errdefer _ = self.store.close(true, true);
        self.dir = try std.mem.printSentinel(&self.dir_buffer, "/tmp/objstore-unit-{s}-{d}", .{ what, sys.getpid() }, 0);
        self.spiller = Spiller.init(self.store);
        try self.spiller.configure(self.dir);
    }

    /// Closes the store (the last process removes its spill files), then the emptied folder.
    fn close(self: *SpillFixture) void {
        self.spiller.deinit();
        _ = self.store.close(true, true);
        _ = std.os.linux.rmdir(self.dir.ptr);
    }
};

fn dataOf(store: *Store, region: Store.Region) []u8 {
    return (store.base + region.offset_bytes)[0..@intCast(region.size_bytes)];
}

test "create, write, seal, get, release, drop: memory returns to zero" {
    var name_buffer: [64]u8 = undefined;
    const store = try openFresh(&name_buffer, 1 << 20);
    defer _ = store.close(true, true);
    const id = idOf(1);
    const w = try store.create(&id, 1000, &.{});
    try testing.expectEqual(@as(u64, 0), w.offset_bytes % 64);
    @memset(dataOf(store, w), 7);
    try testing.expectError(error.NotSealed, store.get(&id));
    try store.seal(&id);
    const r = try store.get(&id);
    try testing.expectEqual(@as(u64, 1000), r.size_bytes);
    try testing.expectEqual(@as(u8, 7), dataOf(store, r)[999]);
    try testing.expectEqual(@as(u64, 1000), store.stats().pinned_bytes);
    try store.dropRef(&id); // pinned: stays
    try testing.expectEqual(Store.ObjectState.sealed, store.contains(&id));
    try store.release(&id); // last holder: deleted
    try testing.expectEqual(Store.ObjectState.absent, store.contains(&id));
    const s = store.stats();
    try testing.expectEqual(@as(u64, 0), s.used_bytes);
    try testing.expectEqual(@as(u64, 0), s.object_count);
    try testing.expectEqual(@as(u64, 0), s.pinned_bytes);
}

test "duplicate ids, unknown ids and a full store are errors that keep what is stored" {
    var name_buffer: [64]u8 = undefined;
    const store = try openFresh(&name_buffer, 64 * 1024);
    defer _ = store.close(true, true);
    const a = idOf(1);
    _ = try store.create(&a, 40 * 1024, &.{});
    try store.seal(&a);
    try testing.expectError(error.Exists, store.create(&a, 10, &.{}));
    try testing.expectError(error.StoreFull, store.create(&idOf(2), 40 * 1024, &.{}));
    try testing.expectError(error.StoreFull, store.create(&idOf(3), 1 << 30, &.{}));
    try testing.expectError(error.Absent, store.get(&idOf(9)));
    try testing.expectError(error.InvalidArgument, store.release(&a));
    _ = try store.get(&a);
    try store.release(&a);
    try store.dropRef(&a);
    try testing.expectEqual(@as(u64, 0), store.stats().used_bytes);
}

test "abort frees an unsealed object" {
    var name_buffer: [64]u8 = undefined;
    const store = try openFresh(&name_buffer, 1 << 20);
    defer _ = store.close(true, true);
    const a = idOf(5);
    _ = try store.create(&a, 5000, &.{});
    try store.abort(&a);
    try testing.expectEqual(Store.ObjectState.absent, store.contains(&a));
    try testing.expectEqual(@as(u64, 0), store.stats().used_bytes);
    _ = try store.create(&a, 10, &.{}); // the id can be used again
    try store.seal(&a);
    try store.dropRef(&a);
}

test "a container keeps its children alive until it is deleted" {
    var name_buffer: [64]u8 = undefined;
    const store = try openFresh(&name_buffer, 1 << 20);
    defer _ = store.close(true, true);
    const child = idOf(10);
    const parent = idOf(11);
    _ = try store.create(&child, 100, &.{});
    try store.seal(&child);
    _ = try store.create(&parent, 100, &.{child});
    try store.seal(&parent);
    try store.dropRef(&child);
    try testing.expectEqual(Store.ObjectState.sealed, store.contains(&child));
    try store.dropRef(&parent);
    try testing.expectEqual(Store.ObjectState.absent, store.contains(&parent));
    try testing.expectEqual(Store.ObjectState.absent, store.contains(&child));
    try testing.expectEqual(@as(u64, 0), store.stats().used_bytes);
    try testing.expectError(error.Absent, store.create(&idOf(12), 1, &.{idOf(99)}));
}

test "a second attachment sees the same objects; the last close removes the segment" {
    var name_buffer: [64]u8 = undefined;
    const name = uniqueName(&name_buffer);
    const first = try Store.open(name, .{ .capacity_bytes = 1 << 20, .prefault = false });
    const second = try Store.open(name, .{ .capacity_bytes = 1 << 20, .prefault = false });
    try testing.expectError(error.StoreExists, Store.open(name, .{ .capacity_bytes = 1 << 20, .exclusive = true }));
    const id = idOf(3);
    const w = try first.create(&id, 8, &.{});
    @memcpy(dataOf(first, w), "abcdefgh");
    try first.seal(&id);
    try second.addRef(&id);
    try first.dropRef(&id);
    const r = try second.get(&id);
    try testing.expectEqualStrings("abcdefgh", dataOf(second, r));
    try second.release(&id);
    try testing.expect(!first.close(true, true));
    try testing.expect(second.close(true, true));
    try testing.expectError(error.StoreNotFound, Store.open(name, .{ .create = false }));
}

test "an attach that finds the segment removed while it waited for the lock does not attach to it" {
    var name_buffer: [64]u8 = undefined;
    const name = uniqueName(&name_buffer);
    const first = try Store.open(name, .{ .capacity_bytes = 1 << 20, .prefault = false });
    // Hold the segment's lock as a last process removing it would, while an attach waits.
    const fd = try sys.open(first.segment.shmPath(), .{ .ACCMODE = .RDONLY }, 0);
    defer sys.close(fd);
    _ = std.os.linux.flock(fd, std.posix.LOCK.EX);
    const Attach = struct {
        fn run(store_name: []const u8, outcome: *?anyerror) void {
            if (Store.open(store_name, .{ .create = false, .threads = false })) |store| {
                _ = store.close(false, true);
                outcome.* = null;
            } else |err| outcome.* = err;
        }
    };
    var outcome: ?anyerror = error.Unset;
    const thread = try std.Thread.spawn(.{}, Attach.run, .{ name, &outcome });
    sys.sleepNs(50 * std.time.ns_per_ms); // the attach has opened the file and waits for the lock
    try sys.unlink(first.segment.shmPath());
    _ = std.os.linux.flock(fd, std.posix.LOCK.UN);
    thread.join();
    try testing.expectEqual(@as(?anyerror, error.StoreNotFound), outcome);
    _ = first.close(false, true);
}

test "countLiveClients counts the living attachments without attaching; a dead one is not counted" {
    var name_buffer: [64]u8 = undefined;
    const name = uniqueName(&name_buffer);
    const store = try Store.open(name, .{ .capacity_bytes = 1 << 20, .prefault = false });
    try testing.expectEqual(@as(u32, 1), try Store.countLiveClients(name));
    const pid = try sys.fork();
    if (pid == 0) {
        // Attaches and dies without detaching.
        _ = Store.open(name, .{ .create = false, .threads = false }) catch std.os.linux.exit_group(1);
        std.os.linux.exit_group(0);
    }
    var wait_status: i32 = 0;
    _ = std.os.linux.waitpid(@intCast(pid), &wait_status, 0);
    try testing.expectEqual(@as(i32, 0), wait_status);
    try testing.expectEqual(@as(u32, 2), store.attachedCount());
    try testing.expectEqual(@as(u32, 1), try Store.countLiveClients(name));
    try testing.expectEqual(@as(u32, 1), store.attachedProcesses());
    try testing.expect(store.close(true, true));
    try testing.expectError(error.StoreNotFound, Store.countLiveClients(name));
}

test "a reference is taken at once while the object is spilling, restoring or moving; not once it is being deleted" {
    var name_buffer: [64]u8 = undefined;
    const name = uniqueName(&name_buffer);
    const owner = try Store.open(name, .{ .capacity_bytes = 1 << 20, .prefault = false });
    const taker = try Store.open(name, .{ .capacity_bytes = 1 << 20, .prefault = false });
    const id = idOf(5);
    _ = try owner.create(&id, 64, &.{});
    try owner.seal(&id);
    const found = owner.find(&id).?;
    const slot = &owner.segment.index.slots[found.slot_index];
    // As a spiller, restorer or mover would leave it mid-way (they hold no reference of theirs).
    for ([_]layout.Tag{ .spilling, .restoring, .moving }) |tag| {
        slot.state.store(found.state.with(tag).toWord(), .seq_cst);
        try taker.addRef(&id);
        try taker.dropRef(&id);
    }
    // Deleting: a deleter starts only once no one holds the object, so no one can take it any
    // more (this test's owner still holds it: a real deleter would have backed off); no bit of
    // the taker's is left behind.
    const holders_before = slot.ref_holders.load(.seq_cst);
    slot.state.store(found.state.with(.deleting).toWord(), .seq_cst);
    try testing.expectError(error.Absent, taker.addRef(&id));
    try testing.expectEqual(holders_before, slot.ref_holders.load(.seq_cst));
    slot.state.store(found.state.toWord(), .seq_cst);
    try owner.dropRef(&id);
    try testing.expect(!owner.close(true, true));
    try testing.expect(taker.close(true, true));
}

test "bad names and a foreign file are clear errors" {
    try testing.expectError(error.InvalidArgument, Store.open("", .{ .capacity_bytes = 1 << 20 }));
    try testing.expectError(error.InvalidArgument, Store.open("a/b", .{ .capacity_bytes = 1 << 20 }));
    try testing.expectError(error.InvalidArgument, Store.open("x", .{ .capacity_bytes = 1 }));
    // Each would be another file than /dev/shm/objstore-<name>, or a channel's name.
    for ([_][]const u8{ ".", "..", ".hidden", "../x", "a\x00b", "\xc3\xa9", "a b", "ch-x-0123456789abcdef" }) |bad| {
        try testing.expectError(error.InvalidArgument, Store.open(bad, .{ .capacity_bytes = 1 << 20 }));
    }
    const too_long: [layout.name_size_max + 1]u8 = @splat('n');
    try testing.expectError(error.InvalidArgument, Store.open(&too_long, .{ .capacity_bytes = 1 << 20 }));
    var name_buffer: [64]u8 = undefined;
    const name = uniqueName(&name_buffer);
    var path_buffer: [128]u8 = undefined;
    const path = try std.fmt.bufPrintSentinel(&path_buffer, "/dev/shm/objstore-{s}", .{name}, 0);
    const fd = try sys.open(path, .{ .ACCMODE = .RDWR, .CREAT = true, .EXCL = true }, 0o600);
    try sys.ftruncate(fd, 8192);
    sys.close(fd);
    defer sys.unlink(path) catch {};
    try testing.expectError(error.BadStore, Store.open(name, .{ .create = false }));
}

test "spill and restore return the same bytes; a flipped byte is corruption" {
    var fixture: SpillFixture = undefined;
    try fixture.open("spill");
    defer fixture.close();
    const store = fixture.store;
    const dir = fixture.dir;
    const spiller = &fixture.spiller;
    var ids: [4]layout.ObjectId = undefined;
    for (&ids, 0..) |*id, k| {
        id.* = idOf(100 + k);
        const w = try store.create(id, 3000 + k, &.{});
        for (dataOf(store, w), 0..) |*byte, j| byte.* = @truncate(j * 31 + k);
        try store.seal(id);
    }
    const outcome = try spiller.spillLru(1 << 30);
    try testing.expectEqual(@as(u64, 4), outcome.objects);
    try testing.expectEqual(@as(u64, 0), store.stats().used_bytes);
    try testing.expectEqual(@as(u64, 4), store.stats().spilled_objects);
    try testing.expectError(error.Spilled, store.get(&ids[0]));
    try spiller.restore(&ids[0]);
    const r = try store.get(&ids[0]);
    for (dataOf(store, r), 0..) |byte, j| try testing.expectEqual(@as(u8, @truncate(j * 31)), byte);
    try store.release(&ids[0]);
    // Corrupt the file of the others: restore reports it and the object stays spilled.
    const extra = &store.segment.index.extras[store.find(&ids[1]).?.slot_index];
    var path_buffer: [256]u8 = undefined;
    const file = store.segment.spill_files[extra.spill_file - 1];
    const path = try std.fmt.bufPrintSentinel(&path_buffer, "{s}/objstore-{s}-{d}.spill", .{ dir, store.storeName(), file.serial }, 0);
    const fd = try sys.open(path, .{ .ACCMODE = .RDWR }, 0);
    const at = extra.spill_offset_bytes + 64 + 10;
    var byte: [1]u8 = undefined;
    _ = std.os.linux.pread(fd, &byte, 1, @intCast(at));
    byte[0] ^= 0xff;
    _ = std.os.linux.pwrite(fd, &byte, 1, @intCast(at));
    sys.close(fd);
    try testing.expectError(error.Corrupt, spiller.restore(&ids[1]));
    try testing.expectEqual(Store.ObjectState.spilled, store.contains(&ids[1]));
    try spiller.restore(&ids[2]);
    // Deleting every object deletes the file.
    for (&ids) |*id| try store.dropRef(id);
    try testing.expectError(error.NotFound, sys.pathSize(path));
    try testing.expectEqual(@as(u64, 0), store.stats().spilled_objects);
}

test "a create that only fits after compaction moves unpinned objects and keeps their bytes" {
    var name_buffer: [64]u8 = undefined;
    const capacity_bytes: u64 = 1 << 20;
    const store = try openFresh(&name_buffer, capacity_bytes);
    defer _ = store.close(true, true);
    // 64 objects of 16 KiB fill the store; free every other one: half is free, in 16 KiB holes.
    var k: u64 = 0;
    while (k < 64) : (k += 1) {
        const id = idOf(1000 + k);
        const w = try store.create(&id, 16 * 1024, &.{});
        @memset(dataOf(store, w), @truncate(k));
        try store.seal(&id);
    }
    k = 0;
    while (k < 64) : (k += 2) try store.dropRef(&idOf(1000 + k));
    // One pinned object stays where it is, whatever happens.
    const pinned = idOf(1000 + 1);
    const pinned_region = try store.get(&pinned);
    // 256 KiB needs 16 neighbouring holes: only compaction can make that.
    const big = idOf(5000);
    const w = try store.create(&big, 256 * 1024, &.{});
    @memset(dataOf(store, w), 0xee);
    try store.seal(&big);
    k = 1;
    while (k < 64) : (k += 2) {
        const id = idOf(1000 + k);
        const r = try store.get(&id);
        for (dataOf(store, r)) |byte| try testing.expectEqual(@as(u8, @truncate(k)), byte);
        try store.release(&id);
    }
    const again = try store.get(&pinned);
    try testing.expectEqual(pinned_region.offset_bytes, again.offset_bytes);
    try store.release(&pinned);
    try store.release(&pinned);
    try testing.expectError(error.StoreFull, store.create(&idOf(6000), 512 * 1024, &.{}));
}

test "a store larger than /dev/shm can hold is refused at open" {
    var name_buffer: [64]u8 = undefined;
    try testing.expectError(error.StoreFull, Store.open(uniqueName(&name_buffer), .{ .capacity_bytes = 1 << 50, .prefault = false }));
}

fn readWholeFile(path: [:0]const u8, buffer: []u8) ![]u8 {
    const fd = try sys.open(path, .{ .ACCMODE = .RDONLY }, 0);
    defer sys.close(fd);
    const rc = std.os.linux.pread(fd, buffer.ptr, buffer.len, 0);
    return buffer[0..rc];
}

test "remote copies: upload, restore from a fetched region, delete once the objects are gone" {
    const RemoteFiles = @import("RemoteFiles.zig");
    const spill_io = @import("spill_io.zig");
    var fixture: SpillFixture = undefined;
    try fixture.open("remote");
    defer fixture.close();
    const store = fixture.store;
    const dir = fixture.dir;
    const spiller = &fixture.spiller;
    var ids: [3]layout.ObjectId = undefined;
    for (&ids, 0..) |*id, k| {
        id.* = idOf(200 + k);
        const w = try store.create(id, 5000 + k, &.{});
        for (dataOf(store, w), 0..) |*byte, j| byte.* = @truncate(j * 7 + k);
        try store.seal(id);
    }
    _ = try spiller.spillLru(1 << 30);
    const c = RemoteFiles.claimUpload(&store.segment).?;
    try testing.expect(RemoteFiles.claimUpload(&store.segment) == null); // one claim per file
    // "Upload": keep the file's bytes, as the remote copy.
    var path_buffer: [256]u8 = undefined;
    const path = try std.fmt.bufPrintSentinel(&path_buffer, "{s}/objstore-{s}-{d}.spill", .{ dir, store.storeName(), c.serial }, 0);
    var copy_buffer: [64 << 10]u8 = undefined;
    const copy = try readWholeFile(path, &copy_buffer);
    try testing.expectEqual(c.size_bytes, copy.len);
    RemoteFiles.finishUpload(&store.segment, c, true);
    try testing.expectError(error.NotFound, sys.pathSize(path));
    const where = try spiller.location(&ids[1]);
    try testing.expectEqual(layout.FileState.remote, where.file_state);
    try testing.expectEqual(spill_io.regionSizeBytes(5001), where.region_size_bytes);
    // A local restore finds no file; a region from the copy restores; a flipped byte is corrupt.
    try testing.expectError(error.SpillMissing, spiller.restore(&ids[1]));
    const region = copy[@intCast(where.offset_bytes)..][0..@intCast(where.region_size_bytes)];
    region[100] ^= 1;
    try testing.expectError(error.Corrupt, spiller.restoreFromRegion(&ids[1], region));
    region[100] ^= 1;
    try spiller.restoreFromRegion(&ids[1], region);
    const r = try store.get(&ids[1]);
    for (dataOf(store, r), 0..) |byte, j| try testing.expectEqual(@as(u8, @truncate(j * 7 + 1)), byte);
    try store.release(&ids[1]);
    // The last object gone: the copy waits for deletion, claimed once.
    for (&ids) |*id| try store.dropRef(id);
    const d = RemoteFiles.claimDelete(&store.segment).?;
    try testing.expectEqual(c.serial, d.serial);
    try testing.expect(RemoteFiles.claimDelete(&store.segment) == null);
    RemoteFiles.finishDelete(&store.segment, d, true);
    try testing.expectEqual(layout.FileState.free, SpillFiles.stateOf(&store.segment.spill_files[d.file_index]));
}

test "remote copies: objects freed mid-upload leave the copy for deletion; a dead uploader's claim is undone" {
    const RemoteFiles = @import("RemoteFiles.zig");
    var fixture: SpillFixture = undefined;
    try fixture.open("orphan");
    defer fixture.close();
    const store = fixture.store;
    const spiller = &fixture.spiller;
    const id = idOf(300);
    _ = try store.create(&id, 100, &.{});
    try store.seal(&id);
    _ = try spiller.spillLru(1 << 30);
    const c = RemoteFiles.claimUpload(&store.segment).?;
    try store.dropRef(&id);
    try testing.expectEqual(layout.FileState.upload_orphaned, SpillFiles.stateOf(&store.segment.spill_files[c.file_index]));
    RemoteFiles.finishUpload(&store.segment, c, false); // even a failed PUT may have stored something
    try testing.expectEqual(layout.FileState.remote_unused, SpillFiles.stateOf(&store.segment.spill_files[c.file_index]));
    // A claim held by a client that died goes back one step.
    const d = RemoteFiles.claimDelete(&store.segment).?;
    store.lock();
    RemoteFiles.reclaimClient(&store.segment, store.segment.client_index);
    store.unlock();
    try testing.expectEqual(layout.FileState.remote_unused, SpillFiles.stateOf(&store.segment.spill_files[d.file_index]));
    const again = RemoteFiles.claimDelete(&store.segment).?;
    RemoteFiles.finishDelete(&store.segment, again, true);
}

test "a restored object keeps its copy: spilling it again writes nothing; deleting it deletes the file" {
    var fixture: SpillFixture = undefined;
    try fixture.open("clean");
    defer fixture.close();
    const store = fixture.store;
    const dir = fixture.dir;
    const spiller = &fixture.spiller;
    const id = idOf(400);
    const w = try store.create(&id, 4000, &.{});
    for (dataOf(store, w), 0..) |*byte, j| byte.* = @truncate(j * 13);
    try store.seal(&id);
    _ = try spiller.spillLru(1 << 30);
    try spiller.restore(&id);
    const files_written = store.segment.header.spill_file_next.load(.monotonic);
    const again = try spiller.spillLru(1 << 30);
    try testing.expectEqual(@as(u64, 1), again.objects);
    try testing.expectEqual(files_written, store.segment.header.spill_file_next.load(.monotonic));
    try testing.expectEqual(Store.ObjectState.spilled, store.contains(&id));
    try testing.expectEqual(@as(u64, 0), store.stats().used_bytes);
    try spiller.restore(&id);
    const r = try store.get(&id);
    for (dataOf(store, r), 0..) |byte, j| try testing.expectEqual(@as(u8, @truncate(j * 13)), byte);
    try store.release(&id);
    const extra = &store.segment.index.extras[store.find(&id).?.slot_index];
    const file = store.segment.spill_files[extra.spill_file - 1];
    var path_buffer: [256]u8 = undefined;
    const path = try std.fmt.bufPrintSentinel(&path_buffer, "{s}/objstore-{s}-{d}.spill", .{ dir, store.storeName(), file.serial }, 0);
    _ = try sys.pathSize(path);
    try store.dropRef(&id);
    try testing.expectError(error.NotFound, sys.pathSize(path));
}

test "a 64 MiB store holds 250,000 small objects at once (it used to stop at 65,536), and a full index names its limit" {
    var name_buffer: [64]u8 = undefined;
    const store = try openFresh(&name_buffer, 64 << 20);
    defer _ = store.close(true, true);
    try testing.expect(store.segment.index.slots.len >= layout.slot_count_floor);
    const count = 250_000;
    var k: u64 = 0;
    while (k < count) : (k += 1) {
        _ = try store.create(&idOf(k), 8, &.{});
        try store.seal(&idOf(k));
    }
    try testing.expectEqual(@as(u64, count), store.stats().object_count);
    try testing.expectEqual(@as(u32, count), store.segment.index.highWater());
    k = 0;
    while (k < count) : (k += 1) try store.dropRef(&idOf(k));
    try testing.expectEqual(@as(u64, 0), store.stats().object_count);
    try testing.expectEqual(@as(u32, 0), store.segment.index.highWater()); // scans cost nothing again

    var small_buffer: [64]u8 = undefined;
    const small = try Store.open(uniqueName(&small_buffer), .{ .capacity_bytes = 1 << 20, .slot_count = 100, .exclusive = true, .prefault = false });
    defer _ = small.close(true, true);
    k = 0;
    while (k < 100) : (k += 1) _ = try small.create(&idOf(k), 8, &.{});
    try testing.expectError(error.IndexFull, small.create(&idOf(100), 8, &.{}));
    try testing.expect(std.mem.startsWith(u8, @import("status.zig").detail(), "100 objects, one per"));
}

test "the index's slots are touched only as objects use them" {
    var name_buffer: [64]u8 = undefined;
    // Prefaulted as a default store is: the header, bitmap and data, but not the index.
    const store = try Store.open(uniqueName(&name_buffer), .{ .capacity_bytes = 64 << 20, .exclusive = true });
    defer _ = store.close(true, true);
    const id = idOf(1);
    _ = try store.create(&id, 8, &.{});
    try store.seal(&id);
    sys.sleepNs(100 * std.time.ns_per_ms); // let the prefault thread get past the metadata
    const slots_bytes = store.segment.index.slots.len * @sizeOf(layout.Slot);
    const pages = slots_bytes / layout.page_size_bytes;
    const residency = try std.heap.page_allocator.alloc(u8, pages);
    defer std.heap.page_allocator.free(residency);
    const rc = std.os.linux.mincore(store.base + store.segment.header.slots_offset, slots_bytes, residency.ptr);
    try testing.expectEqual(@as(usize, 0), rc);
    var resident: usize = 0;
    for (residency) |r| resident += r & 1;
    try testing.expectEqual(@as(usize, 1), resident); // the page of slot 0
    try store.dropRef(&id);
}

test "a full spill disk: objects with a spill copy still make room; otherwise NoSpace names the directory and sizes" {
    var fixture: SpillFixture = undefined;
    try fixture.open("full");
    defer fixture.close();
    const store = fixture.store;
    const spiller = &fixture.spiller;
    // `dirty` is older and was never spilled; `clean` was spilled and restored, so it has a copy.
    const dirty = idOf(500);
    const clean = idOf(501);
    for ([_]layout.ObjectId{ dirty, clean }, 0..) |id, k| {
        const w = try store.create(&id, 4000, &.{});
        for (dataOf(store, w), 0..) |*byte, j| byte.* = @truncate(j * 7 + k);
        try store.seal(&id);
    }
    try spiller.spillOne(&clean);
    try spiller.restore(&clean);

    spiller.writer.?.inject_write_errno = .NOSPC;
    const outcome = try spiller.spillLru(4000);
    try testing.expectEqual(@as(u64, 1), outcome.objects);
    try testing.expectEqual(Store.ObjectState.sealed, store.contains(&dirty));
    try testing.expectEqual(Store.ObjectState.spilled, store.contains(&clean));

    spiller.writer.?.inject_write_errno = .NOSPC;
    try testing.expectError(error.NoSpace, spiller.spillLru(4000));
    try testing.expect(std.mem.indexOf(u8, status.detail(), "is full: spilling 1 object(s) needs 4096 bytes, ") != null);
    try testing.expect(std.mem.indexOf(u8, status.detail(), fixture.dir) != null);
    try testing.expectEqual(Store.ObjectState.sealed, store.contains(&dirty));
    const r = try store.get(&dirty);
    for (dataOf(store, r), 0..) |byte, j| try testing.expectEqual(@as(u8, @truncate(j * 7)), byte);
    try store.release(&dirty);
    // With room again, the same object spills.
    _ = try spiller.spillLru(4000);
    try testing.expectEqual(Store.ObjectState.spilled, store.contains(&dirty));
    try store.dropRef(&dirty);
    try store.dropRef(&clean);
}
