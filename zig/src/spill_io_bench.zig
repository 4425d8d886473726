//! Throwaway measurement for spill_io: CRC32C throughput, and write/read bandwidth of a 256 MiB
//! spill file on each backend. Not a test; run with
//!   python3 -m ziglang run zig/src/spill_io_bench.zig -lc -O ReleaseFast
//! Files go to $OBJSTORE_BENCH_DIR (default /tmp; use a disk-backed directory, not tmpfs).
//! $OBJSTORE_BENCH_WRITE_MAX overrides Writer.write_size_max_bytes (split large writes).

const std = @import("std");
const spill_io = @import("spill_io.zig");
const linux = std.os.linux;
const assert = std.debug.assert;

const file_size_bytes: u64 = 256 << 20;
const Crc32cTable = std.hash.crc.Generic(u32, .{
    .polynomial = 0x1edc6f41,
    .initial = 0xffffffff,
    .reflect_input = true,
    .reflect_output = true,
    .xor_output = 0xffffffff,
});

fn nowNs() u64 {
    var ts: linux.timespec = undefined;
    assert(linux.errno(linux.clock_gettime(.MONOTONIC, &ts)) == .SUCCESS);
    return @as(u64, @intCast(ts.sec)) * std.time.ns_per_s + @as(u64, @intCast(ts.nsec));
}

fn gbPerS(size_bytes: u64, elapsed_ns: u64) f64 {
    return @as(f64, @floatFromInt(size_bytes)) / @as(f64, @floatFromInt(@max(elapsed_ns, 1)));
}

fn benchCrc(pool: []const u8) void {
    var checksum: u32 = 0;
    const rounds: u32 = 4;
    const start_ns = nowNs();
    for (0..rounds) |_| checksum ^= std.hash.crc.@"CRC-32/ISCSI".hash(pool);
    const hardware_ns = nowNs() - start_ns;
    const table_slice = pool[0 .. 32 << 20];
    const table_start_ns = nowNs();
    checksum ^= Crc32cTable.hash(table_slice);
    const table_ns = nowNs() - table_start_ns;
    std.debug.print("crc32c std (this target): {d:.2} GB/s; table-driven: {d:.2} GB/s ({x})\n", .{
        gbPerS(pool.len * rounds, hardware_ns), gbPerS(table_slice.len, table_ns), checksum,
    });
}

/// Writes `file_size_bytes` as records of `record_size_bytes`, reads them back cold and hot.
fn benchBackend(
    writer: *spill_io.Writer,
    dir: []const u8,
    pool: []const u8,
    record_size_bytes: u64,
    records: []spill_io.Record,
    dest: []u8,
) !void {
    const record_count = file_size_bytes / record_size_bytes;
    assert(record_count <= records.len);
    for (records[0..record_count], 0..) |*record, index| {
        var id: [28]u8 = @splat(0);
        std.mem.writeInt(u64, id[0..8], index, .little);
        record.* = .{ .id = id, .data = pool[index * record_size_bytes ..][0..record_size_bytes] };
    }
    var path_buffer: [256]u8 = undefined;
    const path = try std.fmt.bufPrintSentinel(&path_buffer, "{s}/objstore-spill-bench-{d}", .{
        dir, linux.getpid(),
    }, 0);
    defer _ = linux.unlink(path.ptr);

    const write_start_ns = nowNs();
    const size_bytes = try writer.writeFile(path.ptr, records[0..record_count]);
    const write_ns = nowNs() - write_start_ns;

    dropPageCache(path.ptr);
    const cold_start_ns = nowNs();
    try readAll(path.ptr, records[0..record_count], dest);
    const cold_ns = nowNs() - cold_start_ns;
    const hot_start_ns = nowNs();
    try readAll(path.ptr, records[0..record_count], dest);
    const hot_ns = nowNs() - hot_start_ns;

    std.debug.print(
        "{s:>8} {d:>6} x {d:>9} B: write+fdatasync {d:.2} GB/s, " ++
            "read cold {d:.2} GB/s, hot {d:.2} GB/s\n",
        .{
            @tagName(writer.backend),     record_count,                record_size_bytes,
            gbPerS(size_bytes, write_ns), gbPerS(size_bytes, cold_ns), gbPerS(size_bytes, hot_ns),
        },
    );
}

fn readAll(path: [*:0]const u8, records: []const spill_io.Record, dest: []u8) !void {
    for (records) |record| {
        try spill_io.readRecord(path, record.file_offset, record.id, dest[0..record.data.len]);
    }
}

/// The file was fdatasynced, so its pages are clean and DONTNEED evicts them.
fn dropPageCache(path: [*:0]const u8) void {
    const rc = linux.open(path, .{ .ACCMODE = .RDONLY, .CLOEXEC = true }, 0);
    if (linux.errno(rc) != .SUCCESS) return;
    const fd: linux.fd_t = @intCast(rc);
    defer _ = linux.close(fd);
    _ = linux.fadvise(fd, 0, 0, linux.POSIX_FADV.DONTNEED);
}

pub fn main() !void {
    const dir: []const u8 = if (std.c.getenv("OBJSTORE_BENCH_DIR")) |value|
        std.mem.span(value)
    else
        "/tmp";
    const allocator = std.heap.page_allocator;
    const pool = try allocator.alloc(u8, file_size_bytes);
    defer allocator.free(pool);
    var prng = std.Random.DefaultPrng.init(42);
    prng.random().bytes(pool);
    const dest = try allocator.alloc(u8, file_size_bytes);
    defer allocator.free(dest);
    const records = try allocator.alloc(spill_io.Record, 4096);
    defer allocator.free(records);

    benchCrc(pool);
    for ([_]bool{ false, true }) |force_pwritev| {
        var writer = spill_io.Writer.init(force_pwritev);
        defer writer.deinit();
        if (std.c.getenv("OBJSTORE_BENCH_WRITE_MAX")) |value| {
            writer.write_size_max_bytes = try std.fmt.parseInt(u32, std.mem.span(value), 10);
        }
        if (!force_pwritev and writer.backend != .io_uring) {
            std.debug.print("io_uring unavailable, skipping\n", .{});
            continue;
        }
        for ([_]u64{ 64 << 10, 1 << 20, file_size_bytes }) |record_size_bytes| {
            try benchBackend(&writer, dir, pool, record_size_bytes, records, dest);
        }
    }
}
