//! The library's panic handler: a panic never wedges a store.
//!
//! A process that panics may hold the allocator lock (or, briefly, the segment's flock); every
//! other process of the store waits for it until it is dead. Zig's default handler writes the
//! message and a stack trace to stderr before it aborts, and a write to a full pipe blocks: the
//! soak found a process blocked so for 14 minutes, inside the lock, while the reader of its
//! stderr was itself waiting for that lock. Here stderr is first replaced, in this process
//! only, by a non-blocking description of the same file: what fits is written, the rest is
//! dropped, and the process dies at once (its locks go with it, and others take over).

const std = @import("std");
const linux = std.os.linux;

/// Declared as `pub const panic` by the library's root (lib.zig) and by executables that
/// link the core directly (the stress test).
pub const handler = std.debug.FullPanic(panicNeverBlocking);

/// The handler's function, for an executable that wraps it (the stress test counts its
/// children's panics first).
pub fn panicNeverBlocking(msg: []const u8, first_trace_addr: ?usize) noreturn {
    @branchHint(.cold);
    stderrNeverBlocks();
    std.debug.defaultPanic(msg, first_trace_addr orelse @returnAddress());
}

/// Points fd 2 at a non-blocking open of the same file (a new description: the other
/// processes sharing the pipe keep theirs as it was). A socket cannot be opened so: it is kept
/// if it has room now, else the message goes to /dev/null.
pub fn stderrNeverBlocks() void {
    const reopened = linux.open("/proc/self/fd/2", .{ .ACCMODE = .WRONLY, .NONBLOCK = true, .APPEND = true, .CLOEXEC = true }, 0);
    if (linux.errno(reopened) == .SUCCESS) return replaceStderr(@intCast(reopened));
    var poll_fds = [1]linux.pollfd{.{ .fd = 2, .events = linux.POLL.OUT, .revents = 0 }};
    const ready = linux.poll(&poll_fds, 1, 0);
    const writable = linux.errno(ready) == .SUCCESS and ready == 1 and poll_fds[0].revents & linux.POLL.OUT != 0 and
        poll_fds[0].revents & (linux.POLL.ERR | linux.POLL.HUP) == 0;
    if (writable) return;
    const null_fd = linux.open("/dev/null", .{ .ACCMODE = .WRONLY, .CLOEXEC = true }, 0);
    if (linux.errno(null_fd) == .SUCCESS) replaceStderr(@intCast(null_fd)) else _ = linux.close(2);
}

fn replaceStderr(fd: linux.fd_t) void {
    if (fd == 2) return;
    _ = linux.dup2(fd, 2);
    _ = linux.close(fd);
}
