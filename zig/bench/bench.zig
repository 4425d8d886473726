//! Native benchmarks of the core: `zig build bench --release` (full run, under a minute) or
//! `zig build bench --release -- --quick` (a few-seconds smoke run for CI). This file is always
//! ReleaseFast; the core module is built like libobjstore: Debug unless `--release` (ReleaseSafe).
//! `--only small|get|put|frag|spill` runs one workload, e.g. under `perf record`.
//!
//! Prints a header describing the machine and one table, `workload | ours | anchor | ratio`,
//! where ratio is our speed over the anchor's speed (above 1 = faster than the anchor), or for
//! fragmentation the worst utilisation over the 0.90 goal. What each anchor is, and the goals,
//! are in bench/README.md.
//!
//! Spill files and the dd anchor go to $OBJSTORE_BENCH_DIR (default /tmp), which should be on
//! the disk that spills would use, not tmpfs; the header says which filesystem it is.

const std = @import("std");
const objstore = @import("objstore");
const Store = objstore.Store;
const Spiller = objstore.Spiller;
const layout = objstore.layout;
const sys = objstore.sys;
const linux = std.os.linux;

extern "c" fn setenv(name: [*:0]const u8, value: [*:0]const u8, overwrite: c_int) c_int;
extern "c" fn unsetenv(name: [*:0]const u8) c_int;

const KiB: u64 = 1 << 10;
const MiB: u64 = 1 << 20;
const GiB: u64 = 1 << 30;
const rounds = 5;
const spill_repeats_max = 3;

const Config = struct {
    quick: bool,
    /// Small puts: store size, ops per timed round, untimed warm-up ops.
    small_store_bytes: u64,
    small_ops: u64,
    small_warmup_ops: u64,
    get_ops: u64,
    /// Large put: object size and store size.
    put_bytes: u64,
    put_store_bytes: u64,
    frag_store_bytes: u64,
    frag_rounds: u32,
    spill_bytes: u64,
    spill_object_bytes: u64,
    spill_store_bytes: u64,
};

const full: Config = .{
    .quick = false,
    .small_store_bytes = 256 * MiB,
    .small_ops = 200_000,
    .small_warmup_ops = 100_000,
    .get_ops = 2_000_000,
    .put_bytes = 800 * MiB,
    .put_store_bytes = 2 * GiB,
    .frag_store_bytes = 1 * GiB,
    .frag_rounds = 1000,
    .spill_bytes = 512 * MiB,
    .spill_object_bytes = 16 * MiB,
    .spill_store_bytes = 1 * GiB,
};

const quick: Config = .{
    .quick = true,
    .small_store_bytes = 64 * MiB,
    .small_ops = 20_000,
    .small_warmup_ops = 10_000,
    .get_ops = 200_000,
    .put_bytes = 64 * MiB,
    .put_store_bytes = 160 * MiB,
    .frag_store_bytes = 1 * GiB,
    .frag_rounds = 10,
    .spill_bytes = 64 * MiB,
    .spill_object_bytes = 16 * MiB,
    .spill_store_bytes = 128 * MiB,
};

pub fn main(init: std.process.Init.Minimal) !void {
    var config = full;
    var only: ?Workload = null;
    var args = std.process.Args.Iterator.init(init.args);
    _ = args.next();
    while (args.next()) |arg| {
        if (std.mem.eql(u8, arg, "--quick")) {
            config = quick;
        } else if (std.mem.eql(u8, arg, "--only")) {
            const name = args.next() orelse return usage();
            only = std.meta.stringToEnum(Workload, name) orelse return usage();
        } else return usage();
    }

    const dir_parent: []const u8 = if (std.c.getenv("OBJSTORE_BENCH_DIR")) |v| std.mem.span(v) else "/tmp";
    var dir_buffer: [512]u8 = undefined;
    const spill_dir = try std.fmt.bufPrintSentinel(&dir_buffer, "{s}/objstore-bench-{d}", .{ dir_parent, sys.getpid() }, 0);

    try printMachine(config, dir_parent);

    var table: Table = .{};
    var notes: Notes = .{};
    const all = only == null;
    if (all or only == .small) try smallPut(config, &table);
    if (all or only == .get) try getHit(config, &table);
    if (all or only == .put) try putBandwidth(config, &table, &notes);
    if (all or only == .frag) try fragmentation(config, &table);
    defer _ = linux.rmdir(spill_dir.ptr);
    if (all or only == .spill) try spill(config, &table, &notes, spill_dir, false);
    if (all or only == .spill) try spill(config, &table, &notes, spill_dir, true);

    notes.print();
    table.print();
}

/// `--only` runs one workload (for profiling it with perf).
const Workload = enum { small, get, put, frag, spill };

fn usage() error{Usage} {
    std.debug.print(
        \\usage: objstore-bench [--quick] [--only small|get|put|frag|spill]
        \\  zig build bench --release [-- --quick]
        \\
    , .{});
    return error.Usage;
}

// ---------------------------------------------------------------- workloads

fn idFor(workload: u8, k: u64) layout.ObjectId {
    var id: layout.ObjectId = @splat(workload);
    std.mem.writeInt(u64, id[0..8], k, .little);
    return id;
}

fn openStore(what: []const u8, capacity_bytes: u64, prefault: bool) !*Store {
    var buffer: [96]u8 = undefined;
    const name = try std.fmt.bufPrint(&buffer, "bench-{s}-{d}", .{ what, sys.getpid() });
    return Store.open(name, .{ .capacity_bytes = capacity_bytes, .exclusive = true, .prefault = prefault }) catch |err| {
        std.debug.print("cannot open a {d} MiB store '{s}' in /dev/shm: {s}\n", .{ capacity_bytes / MiB, name, @errorName(err) });
        return err;
    };
}

/// create(8 B) + write + seal + dropRef (which deletes it), every op on a new id.
fn smallPut(config: Config, table: *Table) !void {
    const store = try openStore("small", config.small_store_bytes, false);
    defer _ = store.close(true, true);
    var next: u64 = 0;
    try smallPuts(store, &next, config.small_warmup_ops);
    var samples: [rounds]f64 = undefined;
    for (&samples) |*sample| {
        const start_ns = sys.nowNs();
        try smallPuts(store, &next, config.small_ops);
        sample.* = perOp(sys.nowNs() - start_ns, config.small_ops);
    }
    const ours = median(&samples);

    for (&samples) |*sample| {
        const start_ns = sys.nowNs();
        mallocFree(config.small_ops);
        sample.* = perOp(sys.nowNs() - start_ns, config.small_ops);
    }
    const anchor = median(&samples);
    var buffer: [64]u8 = undefined;
    table.add(
        try std.fmt.bufPrint(&buffer, "small put 8 B: create+write+seal+dropRef, {d} unique ids", .{config.small_warmup_ops + rounds * config.small_ops}),
        "{d:.0} ns/op",
        .{ours},
        "{d:.0} ns/op (libc malloc+write+free 8 B)",
        .{anchor},
        anchor / ours,
    );
}

fn smallPuts(store: *Store, next: *u64, count: u64) !void {
    for (0..count) |_| {
        const id = idFor(1, next.*);
        next.* += 1;
        const region = try store.create(&id, 8, &.{});
        std.mem.writeInt(u64, store.base[region.offset_bytes..][0..8], next.*, .little);
        try store.seal(&id);
        try store.dropRef(&id);
    }
}

fn mallocFree(count: u64) void {
    for (0..count) |i| {
        const p = std.c.malloc(8) orelse @panic("malloc");
        const word: *volatile u64 = @ptrCast(@alignCast(p));
        word.* = i;
        std.c.free(p);
    }
}

/// get + release of one sealed object (a hit: pin, look up, unpin).
fn getHit(config: Config, table: *Table) !void {
    const store = try openStore("get", 64 * MiB, false);
    defer _ = store.close(true, true);
    const id = idFor(2, 0);
    const region = try store.create(&id, 8, &.{});
    std.mem.writeInt(u64, store.base[region.offset_bytes..][0..8], 42, .little);
    try store.seal(&id);

    var sink: u64 = 0;
    var samples: [rounds]f64 = undefined;
    for (0..rounds + 1) |round| {
        const start_ns = sys.nowNs();
        for (0..config.get_ops) |_| {
            const r = try store.get(&id);
            sink +%= r.offset_bytes;
            try store.release(&id);
        }
        // Round 0 is a warm-up.
        if (round > 0) samples[round - 1] = perOp(sys.nowNs() - start_ns, config.get_ops);
    }
    std.mem.doNotOptimizeAway(sink);
    const ours = median(&samples);

    // Anchor: a process-local hash map hit on the same kind of key.
    const allocator = std.heap.page_allocator;
    var map: std.AutoHashMapUnmanaged(layout.ObjectId, u64) = .empty;
    defer map.deinit(allocator);
    const key_count = 64;
    var keys: [key_count]layout.ObjectId = undefined;
    for (&keys, 0..) |*key, k| {
        key.* = idFor(3, k);
        try map.put(allocator, key.*, k);
    }
    for (0..rounds + 1) |round| {
        const start_ns = sys.nowNs();
        for (0..config.get_ops) |i| {
            sink +%= map.get(keys[i % key_count]).?;
        }
        if (round > 0) samples[round - 1] = perOp(sys.nowNs() - start_ns, config.get_ops);
    }
    std.mem.doNotOptimizeAway(sink);
    const anchor = median(&samples);
    table.add("get hit: get+release of one sealed object", "{d:.0} ns/op", .{ours}, "{d:.0} ns/op (std.AutoHashMap hit, 28 B key)", .{anchor}, anchor / ours);
}

const MemcpyFn = *const fn (noalias dest: ?*anyopaque, noalias src: ?*const anyopaque, size: usize) callconv(.c) ?*anyopaque;

/// The C library's memcpy, which JavaScript runtimes copy with. `@memcpy` calls the copy in
/// Zig's compiler_rt instead, which measured about half as fast for 800 MiB on the reference
/// machine (no non-temporal stores); both sides of the put comparison use the same copy.
fn libcMemcpy() struct { copy: MemcpyFn, name: []const u8 } {
    const fallback = struct {
        fn copy(noalias dest: ?*anyopaque, noalias src: ?*const anyopaque, size: usize) callconv(.c) ?*anyopaque {
            const d: [*]u8 = @ptrCast(dest.?);
            const s: [*]const u8 = @ptrCast(src.?);
            @memcpy(d[0..size], s[0..size]);
            return dest;
        }
    };
    const handle = std.c.dlopen("libc.so.6", .{ .NOW = true }) orelse return .{ .copy = &fallback.copy, .name = "compiler_rt memcpy" };
    const symbol = std.c.dlsym(handle, "memcpy") orelse return .{ .copy = &fallback.copy, .name = "compiler_rt memcpy" };
    return .{ .copy = @ptrCast(symbol), .name = "glibc memcpy" };
}

/// create + memcpy from a warm private buffer + seal + dropRef, against memcpy between two warm
/// private buffers, alternating, in the same run.
fn putBandwidth(config: Config, table: *Table, notes: *Notes) !void {
    const memcpy = libcMemcpy();
    const size: usize = @intCast(config.put_bytes);
    const source = try sys.mapPrivate(size);
    defer sys.unmap(source, size);
    const target = try sys.mapPrivate(size);
    defer sys.unmap(target, size);
    for (0..size / 8) |i| std.mem.writeInt(u64, source[i * 8 ..][0..8], i *% 0x9e3779b97f4a7c15, .little);
    @memset(target[0..size], 0);

    // Anchor of the cold put: the same copy into fresh private memory, first touch (page
    // faults and zeroing included), done before the store takes its memory.
    const fresh = try sys.mapPrivate(size);
    const fresh_start_ns = sys.nowNs();
    _ = memcpy.copy(fresh, source, size);
    const fresh_ns = sys.nowNs() - fresh_start_ns;
    sys.unmap(fresh, size);

    const open_start_ns = sys.nowNs();
    const store = try openStore("put", config.put_store_bytes, true);
    defer _ = store.close(true, true);
    const opened_ns = sys.nowNs();
    var next: u64 = 0;

    // The first put runs right after open, racing the prefault thread: what a caller sees
    // when it puts before the arena is warm.
    const cold_ns = try putOnce(store, &next, source[0..size], memcpy.copy);
    const prefault_ns = try waitPrefault(store, opened_ns);
    notes.add("put: open of a {d} MiB store (ftruncate+fallocate) took {d:.2} s; prefault (MADV_POPULATE_WRITE) done {d:.2} s after open returned (RssShmem)", .{
        config.put_store_bytes / MiB, seconds(opened_ns - open_start_ns), seconds(prefault_ns),
    });

    var put_samples: [rounds]f64 = undefined;
    var copy_samples: [rounds]f64 = undefined;
    for (0..rounds) |round| {
        put_samples[round] = gbPerS(size, try putOnce(store, &next, source[0..size], memcpy.copy));
        const start_ns = sys.nowNs();
        _ = memcpy.copy(target, source, size);
        copy_samples[round] = gbPerS(size, sys.nowNs() - start_ns);
        std.mem.doNotOptimizeAway(target[size - 1]);
    }
    const ours = median(&put_samples);
    const anchor = median(&copy_samples);
    var buffer: [96]u8 = undefined;
    table.add(
        try std.fmt.bufPrint(&buffer, "put {d} MiB: create+memcpy+seal+dropRef, warm arena", .{config.put_bytes / MiB}),
        "{d:.2} GB/s",
        .{ours},
        "{d:.2} GB/s ({s}, warm private buffers)",
        .{ anchor, memcpy.name },
        ours / anchor,
    );
    const cold = gbPerS(size, cold_ns);
    const fresh_anchor = gbPerS(size, fresh_ns);
    table.add(
        try std.fmt.bufPrint(&buffer, "put {d} MiB cold: first put, right after open", .{config.put_bytes / MiB}),
        "{d:.2} GB/s",
        .{cold},
        "{d:.2} GB/s ({s} into fresh private memory)",
        .{ fresh_anchor, memcpy.name },
        cold / fresh_anchor,
    );
}

fn putOnce(store: *Store, next: *u64, source: []const u8, copy: MemcpyFn) !u64 {
    const id = idFor(4, next.*);
    next.* += 1;
    const start_ns = sys.nowNs();
    const region = try store.create(&id, source.len, &.{});
    _ = copy(store.base + region.offset_bytes, source.ptr, source.len);
    try store.seal(&id);
    try store.dropRef(&id);
    return sys.nowNs() - start_ns;
}

/// Waits until the prefaulted part of the data region is mapped into this process (RssShmem of
/// /proc/self/status reaches it) or stops growing; returns the time since `opened_ns`.
fn waitPrefault(store: *Store, opened_ns: u64) !u64 {
    const target_kib = @min(store.segment.header.capacity_bytes, Store.prefault_data_max_bytes) / KiB;
    var last_kib: u64 = 0;
    var stalls: u32 = 0;
    const deadline_ns = sys.nowNs() + 120 * std.time.ns_per_s;
    while (sys.nowNs() < deadline_ns) {
        const kib = rssShmemKib() orelse return error.NoRssShmem;
        if (kib >= target_kib) break;
        if (kib == last_kib) {
            stalls += 1;
            if (stalls >= 100) break; // 1 s without growth: the prefault thread gave up
        } else stalls = 0;
        last_kib = kib;
        sleepNs(10 * std.time.ns_per_ms);
    }
    return sys.nowNs() - opened_ns;
}

fn rssShmemKib() ?u64 {
    var buffer: [8192]u8 = undefined;
    const text = readFile("/proc/self/status", &buffer) orelse return null;
    const value = fieldAfter(text, "RssShmem:") orelse return null;
    return std.fmt.parseInt(u64, firstWord(value), 10) catch null;
}

/// Fill until the first StoreFull, then repeatedly free a random 30% of the live objects and
/// refill until StoreFull; utilisation = live data bytes / capacity at each StoreFull.
fn fragmentation(config: Config, table: *Table) !void {
    const store = try openStore("frag", config.frag_store_bytes, false);
    defer _ = store.close(true, true);
    const allocator = std.heap.page_allocator;
    const live = try allocator.alloc(Live, store.segment.index.slots.len);
    defer allocator.free(live);
    const samples = try allocator.alloc(f64, config.frag_rounds + 1);
    defer allocator.free(samples);
    const arena_samples = try allocator.alloc(f64, config.frag_rounds + 1);
    defer allocator.free(arena_samples);

    var prng = std.Random.DefaultPrng.init(0x0b5_f7a6);
    const random = prng.random();
    const capacity: f64 = @floatFromInt(store.segment.header.capacity_bytes);
    var state: FragState = .{ .store = store, .live = live, .random = random };
    for (samples, arena_samples, 0..) |*sample, *arena_sample, round| {
        if (round > 0) try state.freeFraction(0.30);
        try state.fillUntilFull();
        sample.* = @as(f64, @floatFromInt(state.live_bytes)) / capacity;
        arena_sample.* = @as(f64, @floatFromInt(store.segment.header.used_bytes.load(.monotonic))) / capacity;
    }
    std.mem.sort(f64, samples, {}, std.sort.asc(f64));
    std.mem.sort(f64, arena_samples, {}, std.sort.asc(f64));
    const worst = samples[0];
    var buffer: [96]u8 = undefined;
    table.add(
        try std.fmt.bufPrint(&buffer, "usable capacity: 64 B-64 MiB log-uniform, {d} x (free 30%, refill)", .{config.frag_rounds}),
        "min {d:.3}, median {d:.3} (arena used {d:.3})",
        .{ worst, samples[samples.len / 2], arena_samples[arena_samples.len / 2] },
        "goal 0.900 (live data / capacity at StoreFull)",
        .{},
        worst / 0.90,
    );
}

const Live = struct { k: u64, size_bytes: u64 };

const FragState = struct {
    store: *Store,
    live: []Live,
    random: std.Random,
    count: usize = 0,
    next: u64 = 0,
    live_bytes: u64 = 0,

    fn fillUntilFull(self: *FragState) !void {
        const log_min = @log(64.0);
        const log_max = @log(@as(f64, @floatFromInt(64 * MiB)));
        while (true) {
            const size: u64 = @intFromFloat(@round(@exp(log_min + self.random.float(f64) * (log_max - log_min))));
            const id = idFor(5, self.next);
            _ = self.store.create(&id, size, &.{}) catch |err| switch (err) {
                error.StoreFull => return,
                else => return err,
            };
            try self.store.seal(&id);
            self.live[self.count] = .{ .k = self.next, .size_bytes = size };
            self.count += 1;
            self.next += 1;
            self.live_bytes += size;
        }
    }

    fn freeFraction(self: *FragState, fraction: f64) !void {
        const victims: usize = @intFromFloat(@as(f64, @floatFromInt(self.count)) * fraction);
        // Partial Fisher-Yates: the first `victims` entries become a uniform random sample.
        for (0..victims) |j| {
            const r = j + self.random.uintLessThan(usize, self.count - j);
            std.mem.swap(Live, &self.live[j], &self.live[r]);
            const id = idFor(5, self.live[j].k);
            try self.store.dropRef(&id);
            self.live_bytes -= self.live[j].size_bytes;
        }
        std.mem.copyForwards(Live, self.live[0 .. self.count - victims], self.live[victims..self.count]);
        self.count -= victims;
    }
};

/// Spill `spill_bytes` in `spill_object_bytes` objects with spillLru, then restore them all with
/// a cold page cache; dd writes and reads the same amount to the same directory beside it.
fn spill(config: Config, table: *Table, notes: *Notes, dir: [:0]const u8, force_pwritev: bool) !void {
    const store = try openStore(if (force_pwritev) "spill-pwritev" else "spill", config.spill_store_bytes, true);
    defer _ = store.close(true, true);
    _ = try waitPrefault(store, sys.nowNs());
    if (force_pwritev) _ = setenv("OBJSTORE_IO", "pwritev", 1);
    defer if (force_pwritev) {
        _ = unsetenv("OBJSTORE_IO");
    };
    var spiller = Spiller.init(store);
    defer spiller.deinit();
    try spiller.configure(dir);
    const backend = @tagName(spiller.backend()); // creates the writer, reading OBJSTORE_IO

    const object_count = config.spill_bytes / config.spill_object_bytes;
    const object_size: usize = @intCast(config.spill_object_bytes);
    const data_bytes = object_count * config.spill_object_bytes;
    var path_buffer: [600]u8 = undefined;
    const dd_path = try std.fmt.bufPrintSentinel(&path_buffer, "{s}/dd.tmp", .{dir}, 0);
    defer _ = linux.unlink(dd_path.ptr);

    // Each repetition: new objects, spill all, dd write, restore all (cold), dd read (cold),
    // delete them. New ones each time: a restored object keeps its copy, and spilling it
    // again writes nothing.
    var write_samples: [spill_repeats_max]f64 = undefined;
    var dd_write_samples: [spill_repeats_max]f64 = undefined;
    var read_samples: [spill_repeats_max]f64 = undefined;
    var dd_read_samples: [spill_repeats_max]f64 = undefined;
    const repeats: usize = if (config.quick) 1 else spill_repeats_max;
    var dropped = true;
    for (0..repeats) |rep| {
        const tag: u8 = @intCast(100 + rep);
        for (0..object_count) |k| {
            const id = idFor(tag, k);
            const region = try store.create(&id, object_size, &.{});
            const data = store.base[region.offset_bytes..][0..object_size];
            for (0..object_size / 8) |i| std.mem.writeInt(u64, data[i * 8 ..][0..8], (k << 32 | i) *% 0x9e3779b97f4a7c15, .little);
            try store.seal(&id);
        }
        // Odd repetitions run dd first, so neither side always inherits the other's page
        // cache state.
        if (rep % 2 == 1) {
            _ = linux.unlink(dd_path.ptr);
            dd_write_samples[rep] = gbPerS(data_bytes, try runDd(.write, dd_path, data_bytes / MiB));
        }
        linux.sync();
        const write_start_ns = sys.nowNs();
        const outcome = try spiller.spillLru(data_bytes);
        write_samples[rep] = gbPerS(data_bytes, sys.nowNs() - write_start_ns);
        if (outcome.objects != object_count) {
            std.debug.print("spillLru spilled {d} of {d} objects\n", .{ outcome.objects, object_count });
            return error.SpillIncomplete;
        }
        if (rep % 2 == 0) {
            _ = linux.unlink(dd_path.ptr);
            dd_write_samples[rep] = gbPerS(data_bytes, try runDd(.write, dd_path, data_bytes / MiB));
        }

        dropped = dropPageCache() and dropped;
        const read_start_ns = sys.nowNs();
        for (0..object_count) |k| {
            const id = idFor(tag, k);
            try spiller.restore(&id);
        }
        read_samples[rep] = gbPerS(data_bytes, sys.nowNs() - read_start_ns);
        try checkRestored(store, tag, object_count, object_size);
        for (0..object_count) |k| {
            const id = idFor(tag, k);
            try store.dropRef(&id);
        }

        dropped = dropPageCache() and dropped;
        dd_read_samples[rep] = gbPerS(data_bytes, try runDd(.read, dd_path, data_bytes / MiB));
    }
    notes.add("spill ({s}): median of {d} repetitions; page cache dropped before every restore and dd read: {s}", .{
        backend, repeats, yesNo(dropped),
    });
    var buffer: [96]u8 = undefined;
    const write = median(write_samples[0..repeats]);
    const dd_write = median(dd_write_samples[0..repeats]);
    table.add(
        try std.fmt.bufPrint(&buffer, "spill write {s}: spillLru {d} MiB ({d} x {d} MiB)", .{ backend, data_bytes / MiB, object_count, config.spill_object_bytes / MiB }),
        "{d:.2} GB/s",
        .{write},
        "{d:.2} GB/s (dd bs=1M conv=fdatasync)",
        .{dd_write},
        write / dd_write,
    );
    const read = median(read_samples[0..repeats]);
    const dd_read = median(dd_read_samples[0..repeats]);
    table.add(
        try std.fmt.bufPrint(&buffer, "spill read {s}: restore {d} x {d} MiB, cold cache", .{ backend, object_count, config.spill_object_bytes / MiB }),
        "{d:.2} GB/s",
        .{read},
        "{d:.2} GB/s (dd bs=1M, cold cache)",
        .{dd_read},
        read / dd_read,
    );
}

/// Checks a restored object's first and last words against what was written.
fn checkRestored(store: *Store, tag: u8, object_count: u64, object_size: usize) !void {
    for (0..object_count) |k| {
        const id = idFor(tag, k);
        const region = try store.get(&id);
        defer store.release(&id) catch {};
        const data = store.base[region.offset_bytes..][0..object_size];
        const last = object_size / 8 - 1;
        const ok = std.mem.readInt(u64, data[0..8], .little) == (k << 32) *% 0x9e3779b97f4a7c15 and
            std.mem.readInt(u64, data[last * 8 ..][0..8], .little) == (k << 32 | last) *% 0x9e3779b97f4a7c15;
        if (!ok) return error.RestoredDataWrong;
    }
}

/// sync, then drop the page cache (needs root); false if it could not.
fn dropPageCache() bool {
    linux.sync();
    const rc = linux.open("/proc/sys/vm/drop_caches", .{ .ACCMODE = .WRONLY, .CLOEXEC = true }, 0);
    if (linux.errno(rc) != .SUCCESS) return false;
    const fd: i32 = @intCast(rc);
    defer _ = linux.close(fd);
    return linux.write(fd, "3\n", 2) == 2;
}

const DdMode = enum { write, read };

/// Runs dd and returns the time it reports (else the time we saw), in ns.
fn runDd(mode: DdMode, path: [:0]const u8, count_mib: u64) !u64 {
    var arg_buffers: [2][640]u8 = undefined;
    const argv: [6:null]?[*:0]const u8 = switch (mode) {
        .write => .{
            "dd",
            "if=/dev/zero",
            (try std.fmt.bufPrintSentinel(&arg_buffers[0], "of={s}", .{path}, 0)).ptr,
            "bs=1M",
            (try std.fmt.bufPrintSentinel(&arg_buffers[1], "count={d}", .{count_mib}, 0)).ptr,
            "conv=fdatasync",
        },
        .read => .{
            "dd",
            (try std.fmt.bufPrintSentinel(&arg_buffers[0], "if={s}", .{path}, 0)).ptr,
            "of=/dev/null",
            "bs=1M",
            null,
            null,
        },
    };
    const envp: [1:null]?[*:0]const u8 = .{"LC_ALL=C"};
    var pipe_fds: [2]i32 = undefined;
    if (linux.errno(linux.pipe2(&pipe_fds, .{ .CLOEXEC = true })) != .SUCCESS) return error.Pipe;
    defer _ = linux.close(pipe_fds[0]);

    const start_ns = sys.nowNs();
    const fork_rc = linux.fork();
    if (linux.errno(fork_rc) != .SUCCESS) {
        _ = linux.close(pipe_fds[1]);
        return error.Fork;
    }
    if (fork_rc == 0) {
        // Child: raw syscalls only, then exec.
        _ = linux.dup2(pipe_fds[1], 2);
        const null_rc = linux.open("/dev/null", .{ .ACCMODE = .WRONLY }, 0);
        if (linux.errno(null_rc) == .SUCCESS) _ = linux.dup2(@intCast(null_rc), 1);
        _ = linux.execve("/usr/bin/dd", &argv, &envp);
        _ = linux.execve("/bin/dd", &argv, &envp);
        linux.exit_group(127);
    }
    _ = linux.close(pipe_fds[1]);
    const pid: i32 = @intCast(fork_rc);
    var output: [4096]u8 = undefined;
    var used: usize = 0;
    while (used < output.len) {
        const rc = linux.read(pipe_fds[0], output[used..].ptr, output.len - used);
        if (linux.errno(rc) == .INTR) continue;
        if (linux.errno(rc) != .SUCCESS or rc == 0) break;
        used += rc;
    }
    var wait_status: i32 = 0;
    while (linux.errno(linux.wait4(pid, &wait_status, 0, null)) == .INTR) {}
    const seen_ns = sys.nowNs() - start_ns;
    const exit_code = (@as(u32, @bitCast(wait_status)) >> 8) & 0xff;
    if (wait_status & 0x7f != 0 or exit_code != 0) {
        std.debug.print("dd failed (status {x}): {s}\n", .{ wait_status, output[0..used] });
        return error.DdFailed;
    }
    // "536870912 bytes (537 MB, 512 MiB) copied, 0.512 s, 1.0 GB/s"
    const text = output[0..used];
    if (std.mem.indexOf(u8, text, "copied, ")) |at| {
        const rest = text[at + "copied, ".len ..];
        const end = std.mem.indexOfScalar(u8, rest, ' ') orelse rest.len;
        if (std.fmt.parseFloat(f64, rest[0..end])) |s| {
            if (s > 0) return @intFromFloat(s * std.time.ns_per_s);
        } else |_| {}
    }
    return seen_ns;
}

// ---------------------------------------------------------------- machine

fn printMachine(config: Config, dir_parent: []const u8) !void {
    const allocator = std.heap.page_allocator;
    const cpuinfo_buffer = try allocator.alloc(u8, 4 * MiB);
    defer allocator.free(cpuinfo_buffer);
    const cpuinfo = readFile("/proc/cpuinfo", cpuinfo_buffer) orelse "";
    const model = if (fieldAfter(cpuinfo, "model name")) |v| std.mem.trimStart(u8, v, " \t:") else "unknown CPU";
    var cpus: usize = 0;
    var lines = std.mem.splitScalar(u8, cpuinfo, '\n');
    while (lines.next()) |line| {
        if (std.mem.startsWith(u8, line, "processor")) cpus += 1;
    }
    var meminfo_buffer: [8192]u8 = undefined;
    const meminfo = readFile("/proc/meminfo", &meminfo_buffer) orelse "";
    const mem_kib = if (fieldAfter(meminfo, "MemTotal:")) |v| std.fmt.parseInt(u64, firstWord(v), 10) catch 0 else 0;
    var uts: linux.utsname = undefined;
    _ = linux.uname(&uts);
    var load_buffer: [256]u8 = undefined;
    const load = readFile("/proc/loadavg", &load_buffer) orelse "";
    var load_fields = std.mem.tokenizeScalar(u8, load, ' ');

    var ts: linux.timespec = undefined;
    _ = linux.clock_gettime(.REALTIME, &ts);
    const epoch: std.time.epoch.EpochSeconds = .{ .secs = @intCast(ts.sec) };
    const year_day = epoch.getEpochDay().calculateYearDay();
    const month_day = year_day.calculateMonthDay();
    const day_seconds = epoch.getDaySeconds();

    std.debug.print("objstore native bench ({s}); bench code ReleaseFast, core module as built: Debug by default, ReleaseSafe with --release\n", .{if (config.quick) "--quick" else "full"});
    const virtual = if (fieldAfter(cpuinfo, "flags")) |flags| std.mem.indexOf(u8, flags, " hypervisor") != null else false;
    std.debug.print("machine: {s}, {d} CPUs, {d:.1} GiB RAM, Linux {s} ({s}){s}\n", .{
        model,                                                cpus,
        @as(f64, @floatFromInt(mem_kib)) / (1024.0 * 1024.0), std.mem.sliceTo(&uts.release, 0),
        std.mem.sliceTo(&uts.machine, 0),                     if (virtual) ", virtual machine" else "",
    });
    var reported_buffer: [64]u8 = undefined;
    if (readFile("/sys/module/page_reporting/parameters/reported_kib", &reported_buffer)) |text| {
        const reported_kib = std.fmt.parseInt(u64, std.mem.trim(u8, text, " \n"), 10) catch 0;
        std.debug.print("guest free page reporting is on ({d:.1} GiB handed back to the host so far): first touches of recycled memory are slow and vary\n", .{
            @as(f64, @floatFromInt(reported_kib)) / (1024.0 * 1024.0),
        });
    }
    std.debug.print("date: {d}-{d:0>2}-{d:0>2} {d:0>2}:{d:0>2} UTC; load average before: {s} {s} {s}\n", .{
        year_day.year,                 month_day.month.numeric(),        @as(u32, month_day.day_index) + 1,
        day_seconds.getHoursIntoDay(), day_seconds.getMinutesIntoHour(), load_fields.next() orelse "?",
        load_fields.next() orelse "?", load_fields.next() orelse "?",
    });
    var dir_z_buffer: [512]u8 = undefined;
    const dir_z = try std.fmt.bufPrintSentinel(&dir_z_buffer, "{s}", .{dir_parent}, 0);
    const spill_fs = fsType(dir_z);
    std.debug.print("store: /dev/shm ({s}); spill dir and dd: {s} ({s}{s})\n", .{
        fsType("/dev/shm"),                                                                           dir_parent, spill_fs,
        if (std.mem.eql(u8, spill_fs, "tmpfs")) ": NOT a disk, spill figures measure memory" else "",
    });
}

fn fsType(path: [:0]const u8) []const u8 {
    var buffer: [120]u8 align(8) = undefined;
    const rc = linux.syscall2(.statfs, @intFromPtr(path.ptr), @intFromPtr(&buffer));
    if (linux.errno(rc) != .SUCCESS) return "unknown filesystem";
    const magic = std.mem.readInt(u64, buffer[0..8], .little);
    return switch (magic) {
        0xEF53 => "ext4",
        0x58465342 => "xfs",
        0x9123683E => "btrfs",
        0x01021994 => "tmpfs",
        0x794c7630 => "overlayfs",
        0x2fc12fc1 => "zfs",
        else => "other filesystem",
    };
}

// ---------------------------------------------------------------- helpers

fn readFile(path: [*:0]const u8, buffer: []u8) ?[]const u8 {
    const rc = linux.open(path, .{ .ACCMODE = .RDONLY, .CLOEXEC = true }, 0);
    if (linux.errno(rc) != .SUCCESS) return null;
    const fd: i32 = @intCast(rc);
    defer _ = linux.close(fd);
    var used: usize = 0;
    while (used < buffer.len) {
        const n = linux.read(fd, buffer[used..].ptr, buffer.len - used);
        if (linux.errno(n) == .INTR) continue;
        if (linux.errno(n) != .SUCCESS or n == 0) break;
        used += n;
    }
    return buffer[0..used];
}

/// The rest of the first line that starts with `key`.
fn fieldAfter(text: []const u8, key: []const u8) ?[]const u8 {
    var lines = std.mem.splitScalar(u8, text, '\n');
    while (lines.next()) |line| {
        if (std.mem.startsWith(u8, line, key)) return std.mem.trim(u8, line[key.len..], " \t");
    }
    return null;
}

fn firstWord(text: []const u8) []const u8 {
    var words = std.mem.tokenizeAny(u8, text, " \t");
    return words.next() orelse "";
}

fn sleepNs(ns: u64) void {
    const ts: linux.timespec = .{ .sec = @intCast(ns / std.time.ns_per_s), .nsec = @intCast(ns % std.time.ns_per_s) };
    _ = linux.nanosleep(&ts, null);
}

fn perOp(elapsed_ns: u64, ops: u64) f64 {
    return @as(f64, @floatFromInt(elapsed_ns)) / @as(f64, @floatFromInt(ops));
}

/// Decimal GB/s, as dd reports.
fn gbPerS(size_bytes: u64, elapsed_ns: u64) f64 {
    return @as(f64, @floatFromInt(size_bytes)) / @as(f64, @floatFromInt(@max(elapsed_ns, 1)));
}

fn seconds(ns: u64) f64 {
    return @as(f64, @floatFromInt(ns)) / std.time.ns_per_s;
}

fn median(samples: []f64) f64 {
    std.mem.sort(f64, samples, {}, std.sort.asc(f64));
    return samples[samples.len / 2];
}

fn yesNo(b: bool) []const u8 {
    return if (b) "yes" else "NO (not root?), reads may hit the page cache";
}

/// Formats into `buffer`; returns the length written (0 if it did not fit).
fn formatInto(buffer: []u8, comptime fmt: []const u8, args: anytype) usize {
    const text = std.fmt.bufPrint(buffer, fmt, args) catch return 0;
    return text.len;
}

const Notes = struct {
    lines: [8][200]u8 = undefined,
    lens: [8]usize = @splat(0),
    count: usize = 0,

    fn add(self: *Notes, comptime fmt: []const u8, args: anytype) void {
        if (self.count == self.lines.len) return;
        self.lens[self.count] = formatInto(&self.lines[self.count], fmt, args);
        self.count += 1;
    }

    fn print(self: *const Notes) void {
        for (0..self.count) |i| std.debug.print("{s}\n", .{self.lines[i][0..self.lens[i]]});
        std.debug.print("\n", .{});
    }
};

const Table = struct {
    const column_count = 4;
    const cell_size = 128;
    cells: [16][column_count][cell_size]u8 = undefined,
    lens: [16][column_count]usize = undefined,
    count: usize = 0,

    fn add(
        self: *Table,
        workload: []const u8,
        comptime ours_fmt: []const u8,
        ours_args: anytype,
        comptime anchor_fmt: []const u8,
        anchor_args: anytype,
        ratio: f64,
    ) void {
        if (self.count == self.cells.len) return;
        const row = &self.cells[self.count];
        const lens = &self.lens[self.count];
        lens[0] = formatInto(&row[0], "{s}", .{workload});
        lens[1] = formatInto(&row[1], ours_fmt, ours_args);
        lens[2] = formatInto(&row[2], anchor_fmt, anchor_args);
        lens[3] = formatInto(&row[3], "{d:.2}", .{ratio});
        self.count += 1;
    }

    fn print(self: *const Table) void {
        const headings = [column_count][]const u8{ "workload", "ours", "anchor", "ratio" };
        var widths: [column_count]usize = undefined;
        for (&widths, headings) |*w, h| w.* = h.len;
        for (0..self.count) |r| {
            for (&widths, self.lens[r]) |*w, len| w.* = @max(w.*, len);
        }
        printRow(headings, widths);
        var rule: [column_count][]const u8 = undefined;
        const dashes: [cell_size]u8 = @splat('-');
        for (&rule, widths) |*cell, w| cell.* = dashes[0..w];
        printRow(rule, widths);
        for (0..self.count) |r| {
            var row: [column_count][]const u8 = undefined;
            for (&row, 0..) |*cell, c| cell.* = self.cells[r][c][0..self.lens[r][c]];
            printRow(row, widths);
        }
    }

    fn printRow(row: [column_count][]const u8, widths: [column_count]usize) void {
        const spaces: [cell_size]u8 = @splat(' ');
        std.debug.print("|", .{});
        for (row, widths) |cell, w| std.debug.print(" {s}{s} |", .{ cell, spaces[0 .. w - cell.len] });
        std.debug.print("\n", .{});
    }
};
