//! A worker process ends soon after its parent (the driver or node that spawned it) dies, even
//! while a task keeps its JavaScript busy. The worker's own way out (its stdin ends, it leaves
//! the store in order) runs only when its event loop is free; a synchronous task of an hour
//! would keep it, and the task's pins, alive for that hour after a SIGKILL of its parent.
//!
//! A thread of the library watches the parent pid (a process whose parent dies is given to
//! another, so its parent pid changes). Once it changed, the worker has `grace_ms` to leave by
//! itself; then it is sent SIGTERM, which exits.zig turns into a proper leave (a reaper
//! reclaims what it held), and after as long again, SIGKILL (other processes' crash reclaim
//! covers it).
//!
//! Not PR_SET_PDEATHSIG: it fires when the parent *thread* that forked ends, and runtimes spawn
//! from threads of a pool that may end while the parent lives.

const std = @import("std");
const assert = std.debug.assert;
const linux = std.os.linux;
const sys = @import("sys.zig");

const poll_interval_ns = 100 * std.time.ns_per_ms;

var watching = std.atomic.Value(bool).init(false);

/// Starts watching `parent_pid`, which must be this process's parent now. Once per process:
/// later calls change nothing.
pub fn watch(parent_pid: linux.pid_t, grace_ms: u32) error{ NotParent, System }!void {
    if (linux.getppid() != parent_pid) return error.NotParent;
    if (watching.swap(true, .acq_rel)) return;
    const thread = std.Thread.spawn(.{ .stack_size = 64 * 1024 }, run, .{ parent_pid, grace_ms }) catch {
        watching.store(false, .release);
        return error.System;
    };
    thread.detach();
}

fn run(parent_pid: linux.pid_t, grace_ms: u32) void {
    // Unbounded by design: it watches for as long as the process lives.
    while (linux.getppid() == parent_pid) sys.sleepNs(poll_interval_ns);
    const grace_ns = @as(u64, grace_ms) * std.time.ns_per_ms;
    sys.sleepNs(grace_ns);
    _ = linux.kill(linux.getpid(), .TERM);
    sys.sleepNs(grace_ns);
    _ = linux.kill(linux.getpid(), .KILL);
    linux.exit_group(137); // not reached: SIGKILL cannot be caught
}

test "watching a pid that is not the parent is refused" {
    try std.testing.expectError(error.NotParent, watch(linux.getpid(), 10));
    assert(!watching.load(.acquire));
}
