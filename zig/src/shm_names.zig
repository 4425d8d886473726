//! Names of the files in /dev/shm: a store's segment is `objstore-<store name>`, a worker
//! channel's `objstore-ch-<…>` (Channel.zig). Both sides check names here, so no store name can
//! reach a channel's file and no channel name a store's (invariant 13).

const std = @import("std");
const layout = @import("layout.zig");
const status = @import("status.zig");

const Error = status.Error;

pub const shm_dir = "/dev/shm/";
pub const shm_prefix = "objstore-";
/// What `objstore-<store name>` must not start with; channel files are `objstore-ch-…`.
pub const channel_prefix = "ch-";

/// Room for `/dev/shm/objstore-<longest store name>` and its NUL.
pub const store_path_size_max = shm_dir.len + shm_prefix.len + layout.name_size_max + 1;

/// Store names become file names in /dev/shm: no '/', no NUL, no hidden or dot names. Names
/// starting "ch-" are refused: `objstore-ch-…` is where worker channels live (Channel.zig).
pub fn validateStoreName(name: []const u8) Error!void {
    if (name.len == 0 or name.len > layout.name_size_max) {
        status.setDetail("store name must be 1 to {d} bytes, got {d}", .{ layout.name_size_max, name.len });
        return error.InvalidArgument;
    }
    if (!fileNameChars(name) or name[0] == '.') {
        status.setDetail("store name '{s}' may only hold letters, digits, '-', '_' and '.' (not first)", .{name});
        return error.InvalidArgument;
    }
    if (std.mem.startsWith(u8, name, channel_prefix)) {
        status.setDetail("store name '{s}' may not start with '{s}' (worker channels' files are named so)", .{ name, channel_prefix });
        return error.InvalidArgument;
    }
}

/// `/dev/shm/objstore-<name>`, written into `buffer`; `name` already validated.
pub fn storePath(buffer: *[store_path_size_max]u8, name: []const u8) [:0]const u8 {
    std.debug.assert(name.len > 0 and name.len <= layout.name_size_max);
    return std.mem.printSentinel(buffer, shm_dir ++ shm_prefix ++ "{s}", .{name}, 0) catch unreachable;
}

/// True if every byte of `name` is a letter, a digit, '-', '_' or '.'.
pub fn fileNameChars(name: []const u8) bool {
    for (name) |c| {
        if (!(std.ascii.isAlphanumeric(c) or c == '-' or c == '_' or c == '.')) return false;
    }
    return true;
}

test "store names: channel files and paths are out of reach" {
    try validateStoreName("a-store_1.x");
    try std.testing.expectError(error.InvalidArgument, validateStoreName(""));
    try std.testing.expectError(error.InvalidArgument, validateStoreName(".hidden"));
    try std.testing.expectError(error.InvalidArgument, validateStoreName("a/b"));
    try std.testing.expectError(error.InvalidArgument, validateStoreName("ch-1"));
    var buffer: [store_path_size_max]u8 = undefined;
    try std.testing.expectEqualStrings("/dev/shm/objstore-s", storePath(&buffer, "s"));
}
