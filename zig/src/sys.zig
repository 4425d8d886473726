//! Thin wrappers over the Linux syscalls the store needs, each returning a Zig error.
//! Zig 0.16+ removed most `std.posix` wrappers, so the core talks to `std.os.linux` directly.

const std = @import("std");
const linux = std.os.linux;
const assert = std.debug.assert;

pub const Error = error{
    NotFound,
    Exists,
    PermissionDenied,
    NoSpace,
    NoMemory,
    Interrupted,
    TimedOut,
    System,
};

/// The errno of the last failed call on this thread, kept for error messages.
pub threadlocal var last_errno: u16 = 0;

pub fn check(rc: usize) Error!usize {
    const e = linux.errno(rc);
    if (e == .SUCCESS) return rc;
    last_errno = @intFromEnum(e);
    return switch (e) {
        .NOENT => error.NotFound,
        .EXIST => error.Exists,
        .ACCES, .PERM => error.PermissionDenied,
        .NOSPC, .DQUOT, .FBIG => error.NoSpace,
        .NOMEM => error.NoMemory,
        .INTR => error.Interrupted,
        .TIMEDOUT => error.TimedOut,
        else => error.System,
    };
}

pub fn open(path: [*:0]const u8, flags: linux.O, mode: linux.mode_t) Error!i32 {
    while (true) {
        const rc = check(linux.open(path, flags, mode)) catch |err| switch (err) {
            error.Interrupted => continue,
            else => return err,
        };
        return @intCast(rc);
    }
}

pub fn close(fd: i32) void {
    assert(fd >= 0);
    _ = linux.close(fd);
}

pub fn unlink(path: [*:0]const u8) Error!void {
    _ = try check(linux.unlink(path));
}

pub fn ftruncate(fd: i32, size_bytes: u64) Error!void {
    _ = try check(linux.ftruncate(fd, @intCast(size_bytes)));
}

pub fn fileSize(fd: i32) Error!u64 {
    var stx: linux.Statx = undefined;
    _ = try check(linux.statx(fd, "", linux.AT.EMPTY_PATH, .{ .SIZE = true }, &stx));
    return stx.size;
}

/// Size of a file at `path`, or NotFound.
pub fn pathSize(path: [*:0]const u8) Error!u64 {
    var stx: linux.Statx = undefined;
    _ = try check(linux.statx(linux.AT.FDCWD, path, 0, .{ .SIZE = true }, &stx));
    return stx.size;
}

/// Bytes an unprivileged user can still allocate on the filesystem of `fd` (fstatfs f_bavail).
pub fn freeBytes(fd: i32) Error!u64 {
    // struct statfs on 64-bit Linux: f_type, f_bsize, f_blocks, f_bfree, f_bavail, … (120 bytes).
    var buffer: [15]u64 = undefined;
    _ = try check(linux.syscall2(.fstatfs, @as(usize, @bitCast(@as(isize, fd))), @intFromPtr(&buffer)));
    return buffer[4] * buffer[1];
}

pub fn mapShared(fd: i32, size_bytes: usize) Error![*]align(4096) u8 {
    const rc = try check(linux.mmap(
        null,
        size_bytes,
        .{ .READ = true, .WRITE = true },
        .{ .TYPE = .SHARED },
        fd,
        0,
    ));
    return @ptrFromInt(rc);
}

/// Replaces a shared mapping with private zero pages that reserve the same addresses, so a
/// JavaScript view that outlives the store reads zeros instead of killing its process.
pub fn neuter(base: [*]align(4096) u8, size_bytes: usize) void {
    const rc = linux.mmap(
        base,
        size_bytes,
        .{ .READ = true, .WRITE = true },
        .{ .TYPE = .PRIVATE, .ANONYMOUS = true, .FIXED = true, .NORESERVE = true },
        -1,
        0,
    );
    if (linux.errno(rc) != .SUCCESS) _ = linux.munmap(base, size_bytes);
}

pub fn mapPrivate(size_bytes: usize) Error![*]align(4096) u8 {
    const rc = try check(linux.mmap(
        null,
        size_bytes,
        .{ .READ = true, .WRITE = true },
        .{ .TYPE = .PRIVATE, .ANONYMOUS = true },
        -1,
        0,
    ));
    return @ptrFromInt(rc);
}

pub fn unmap(base: [*]align(4096) u8, size_bytes: usize) void {
    _ = linux.munmap(base, size_bytes);
}

const madv_populate_write: u32 = 23; // Linux 5.14; absent from std's MADV list.

/// Faults pages in without copying anything; false where the kernel lacks the advice.
pub fn populateWrite(base: [*]u8, size_bytes: usize) bool {
    return linux.errno(linux.madvise(base, size_bytes, madv_populate_write)) == .SUCCESS;
}

/// Through libc, which reads the clock in the vDSO: std's own clock_gettime finds the vDSO only
/// from an executable's start code, and in a library loaded by a runtime made a system call
/// each time (most of a spin's cost).
pub fn nowNs() u64 {
    var ts: std.c.timespec = undefined;
    _ = std.c.clock_gettime(.MONOTONIC, &ts);
    return @as(u64, @intCast(ts.sec)) * std.time.ns_per_s + @as(u64, @intCast(ts.nsec));
}

pub fn sleepNs(duration_ns: u64) void {
    const ts = linux.timespec{
        .sec = @intCast(duration_ns / std.time.ns_per_s),
        .nsec = @intCast(duration_ns % std.time.ns_per_s),
    };
    _ = linux.nanosleep(&ts, null);
}

/// Waits on a futex shared between processes (never FUTEX_PRIVATE: Zig's own are private).
pub fn futexWait(word: *const std.atomic.Value(u32), expected: u32, timeout_ns: u64) void {
    const ts = linux.timespec{
        .sec = @intCast(timeout_ns / std.time.ns_per_s),
        .nsec = @intCast(timeout_ns % std.time.ns_per_s),
    };
    _ = linux.futex_4arg(&word.raw, .{ .cmd = .WAIT, .private = false }, expected, &ts);
}

pub fn futexWakeAll(word: *const std.atomic.Value(u32)) void {
    _ = linux.futex_3arg(&word.raw, .{ .cmd = .WAKE, .private = false }, std.math.maxInt(i32));
}

/// fork(2) through libc, for the tests that fork: its atfork handlers reset malloc's locks in
/// the child. A raw fork of a process with threads (a store's prefault or spill thread) can copy
/// a malloc lock held mid-operation, and the child's next free then waits forever.
/// Returns 0 in the child, the child's pid in the parent.
pub fn fork() Error!u32 {
    const rc = std.c.fork();
    if (rc < 0) return error.System;
    return @intCast(rc);
}

pub fn getpid() u32 {
    return @intCast(linux.getpid());
}

pub fn getuid() u32 {
    return linux.getuid();
}

/// A process identity that survives pid reuse: the pid plus its start time in clock ticks
/// (field 22 of /proc/<pid>/stat). Zero when the process does not exist.
pub fn processStartTime(pid: u32) u64 {
    var path_buffer: [64]u8 = undefined;
    const path = std.mem.printSentinel(&path_buffer, "/proc/{d}/stat", .{pid}, 0) catch return 0;
    const fd = open(path, .{ .ACCMODE = .RDONLY, .CLOEXEC = true }, 0) catch return 0;
    defer close(fd);
    var buffer: [1024]u8 = undefined;
    const rc = linux.read(fd, &buffer, buffer.len);
    if (linux.errno(rc) != .SUCCESS or rc == 0) return 0;
    return parseStartTime(buffer[0..rc]);
}

/// Field 22 of a /proc/<pid>/stat line; the command name (field 2) may contain spaces and
/// parentheses, so fields are counted from the last ')'.
fn parseStartTime(line: []const u8) u64 {
    const close_paren = std.mem.lastIndexOfScalar(u8, line, ')') orelse return 0;
    var fields = std.mem.tokenizeScalar(u8, line[close_paren + 1 ..], ' ');
    var field_number: u32 = 3;
    while (fields.next()) |field| : (field_number += 1) {
        if (field_number == 22) return std.fmt.parseInt(u64, field, 10) catch 0;
    }
    return 0;
}

pub fn isAlive(pid: u32, start_time: u64) bool {
    assert(pid != 0);
    return processStartTime(pid) == start_time;
}

test "parseStartTime skips a command name with spaces and parentheses" {
    const line = "1234 (a b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 20 21";
    try std.testing.expectEqual(@as(u64, 424242), parseStartTime(line));
}

test "processStartTime of this process is stable and non-zero" {
    const start = processStartTime(getpid());
    try std.testing.expect(start != 0);
    try std.testing.expect(isAlive(getpid(), start));
    try std.testing.expect(!isAlive(getpid(), start + 1));
}
