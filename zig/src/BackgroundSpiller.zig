//! Spills in the background: a thread of the store's creating process that keeps memory use
//! under the spill threshold, so that puts find room without waiting for a spill and no
//! JavaScript event loop is blocked by disk writes.
//!
//! The thread has its own attachment to the store (its own client entry), so it takes the
//! allocator lock and acts on slots under its own identity, like any other process would.

const std = @import("std");
const assert = std.debug.assert;
const layout = @import("layout.zig");
const status = @import("status.zig");
const sys = @import("sys.zig");
const Store = @import("Store.zig");
const Spiller = @import("Spiller.zig");

const BackgroundSpiller = @This();

/// How often memory use is checked.
const period_ns = 20 * std.time.ns_per_ms;
/// Spilling stops this far below the threshold, so it runs in batches, not object by object.
const hysteresis_fraction = 0.1;

store: *Store,
spiller: Spiller,
threshold_bytes: u64,
target_bytes: u64,
stop: std.atomic.Value(bool) = .init(false),
thread: std.Thread = undefined,

/// Starts spilling store `name` down whenever its use passes `threshold_fraction` of capacity.
pub fn start(name: []const u8, threshold_fraction: f64) status.Error!*BackgroundSpiller {
    if (!(threshold_fraction > 0 and threshold_fraction <= 1)) {
        status.setDetail("spill threshold must be a fraction in (0, 1], got {d}", .{threshold_fraction});
        return error.InvalidArgument;
    }
    const store = try Store.open(name, .{ .create = false });
    errdefer _ = store.close(false, true);
    const self = std.heap.page_allocator.create(BackgroundSpiller) catch return error.System;
    errdefer std.heap.page_allocator.destroy(self);
    const capacity: f64 = @floatFromInt(store.segment.header.capacity_bytes);
    const target_fraction = @max(0, threshold_fraction - hysteresis_fraction);
    self.* = .{
        .store = store,
        .spiller = Spiller.init(store),
        .threshold_bytes = @intFromFloat(capacity * threshold_fraction),
        .target_bytes = @intFromFloat(capacity * target_fraction),
    };
    assert(self.target_bytes <= self.threshold_bytes);
    self.thread = std.Thread.spawn(.{}, run, .{self}) catch return error.System;
    return self;
}

/// Stops the thread and detaches its attachment.
pub fn stopAndDestroy(self: *BackgroundSpiller) void {
    self.stop.store(true, .release);
    self.thread.join();
    self.spiller.deinit();
    _ = self.store.close(false, true);
    std.heap.page_allocator.destroy(self);
}

fn run(self: *BackgroundSpiller) void {
    while (!self.stop.load(.acquire)) {
        const used_bytes = self.store.segment.header.used_bytes.load(.monotonic);
        if (used_bytes > self.threshold_bytes and self.store.segment.header.spill_disabled == 0) {
            // Errors (a full disk, nothing unpinned to spill) leave puts to report them.
            _ = self.spiller.spillLru(used_bytes - self.target_bytes) catch {};
        }
        if (self.store.maintain() > 0) continue;
        sys.sleepNs(period_ns);
    }
}
