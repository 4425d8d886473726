//! Progress of long spill I/O, on stderr: nothing for work that ends within `quiet_ns`, then
//! a line at most every `every_ns`, and one at the end. OBJSTORE_QUIET=1 silences it. A spill
//! or restore runs inside one native call (a `put` that needs room, a `get`), so the caller's
//! event loop cannot report it; this does, in the same format as lib/spill/progress.ts.

const std = @import("std");
const linux = std.os.linux;
const sys = @import("sys.zig");

const Progress = @This();

const quiet_ns: u64 = 2 * std.time.ns_per_s;
const every_ns: u64 = 1 * std.time.ns_per_s;

verb: []const u8,
path: [*:0]const u8,
total_bytes: u64,
start_ns: u64,
last_report_ns: u64 = 0,
reported: bool = false,
/// Where lines go: stderr, or a pipe in tests.
fd: i32 = 2,

pub fn init(verb: []const u8, path: [*:0]const u8, total_bytes: u64) Progress {
    return .{ .verb = verb, .path = path, .total_bytes = total_bytes, .start_ns = sys.nowNs() };
}

pub fn update(self: *Progress, done_bytes: u64) void {
    const now_ns = sys.nowNs();
    if (now_ns - self.start_ns < quiet_ns or now_ns - self.last_report_ns < every_ns) return;
    self.last_report_ns = now_ns;
    self.report(done_bytes, now_ns);
}

pub fn done(self: *Progress) void {
    if (self.reported) self.report(self.total_bytes, sys.nowNs());
}

fn report(self: *Progress, done_bytes: u64, now_ns: u64) void {
    if (std.c.getenv("OBJSTORE_QUIET")) |quiet| if (std.mem.eql(u8, std.mem.span(quiet), "1")) return;
    self.reported = true;
    const seconds = @max(@as(f64, @floatFromInt(now_ns - self.start_ns)) / std.time.ns_per_s, 0.001);
    const done_mb = @as(f64, @floatFromInt(done_bytes)) / 1e6;
    const total_mb = @as(f64, @floatFromInt(self.total_bytes)) / 1e6;
    const percent = if (self.total_bytes == 0) 100 else done_bytes * 100 / self.total_bytes;
    var buffer: [512]u8 = undefined;
    const line = std.fmt.bufPrint(&buffer, "objstore: {s} {s}: {d}% ({d:.0} of {d:.0} MB, {d:.0} MB/s)\n", .{
        self.verb, std.mem.span(self.path), percent, done_mb, total_mb, done_mb / seconds,
    }) catch return;
    _ = linux.write(self.fd, line.ptr, line.len);
}

test "reports only work that has run for a while, then at most once a second" {
    var fds: [2]i32 = undefined;
    try std.testing.expectEqual(linux.E.SUCCESS, linux.errno(linux.pipe2(&fds, .{ .CLOEXEC = true, .NONBLOCK = true })));
    defer _ = linux.close(fds[0]);
    defer _ = linux.close(fds[1]);
    var progress = Progress.init("spilling to", "/tmp/unit.spill", 100_000_000);
    progress.fd = fds[1];
    progress.update(10_000_000);
    try std.testing.expect(!progress.reported);
    progress.start_ns -= 3 * std.time.ns_per_s; // as if it started 3 s ago
    progress.update(50_000_000);
    const last_ns = progress.last_report_ns;
    progress.update(60_000_000);
    try std.testing.expectEqual(last_ns, progress.last_report_ns);
    if (std.c.getenv("OBJSTORE_QUIET") != null) return;
    var buffer: [256]u8 = undefined;
    const rc = linux.read(fds[0], &buffer, buffer.len);
    const line = buffer[0..rc];
    try std.testing.expect(std.mem.startsWith(u8, line, "objstore: spilling to /tmp/unit.spill: 50% (50 of 100 MB, "));
    try std.testing.expect(std.mem.endsWith(u8, line, " MB/s)\n"));
}
