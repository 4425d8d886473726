//! Status codes of the C ABI, their messages, and the detail of the last failure.

const std = @import("std");

/// Keep in sync with `zig/include/objstore.h`.
pub const Status = enum(i32) {
    ok = 0,
    invalid_argument = 1,
    exists = 2,
    absent = 3,
    not_sealed = 4,
    spilled = 5,
    store_full = 6,
    index_full = 7,
    timeout = 8,
    clients_full = 9,
    store_not_found = 10,
    store_exists = 11,
    bad_store = 12,
    abi_mismatch = 13,
    system = 14,
    corrupt = 15,
    spill_disabled = 16,
    busy = 17,
    permission_denied = 18,
    no_space = 19,
    spill_missing = 20,
    cluster_auth = 21,
    unavailable = 22,
};

pub const Error = error{
    InvalidArgument,
    Exists,
    Absent,
    NotSealed,
    Spilled,
    StoreFull,
    IndexFull,
    Timeout,
    ClientsFull,
    StoreNotFound,
    StoreExists,
    BadStore,
    AbiMismatch,
    System,
    Corrupt,
    SpillDisabled,
    Busy,
    PermissionDenied,
    NoSpace,
    SpillMissing,
    ClusterAuth,
    Unavailable,
};

pub fn fromError(err: Error) Status {
    return switch (err) {
        error.InvalidArgument => .invalid_argument,
        error.Exists => .exists,
        error.Absent => .absent,
        error.NotSealed => .not_sealed,
        error.Spilled => .spilled,
        error.StoreFull => .store_full,
        error.IndexFull => .index_full,
        error.Timeout => .timeout,
        error.ClientsFull => .clients_full,
        error.StoreNotFound => .store_not_found,
        error.StoreExists => .store_exists,
        error.BadStore => .bad_store,
        error.AbiMismatch => .abi_mismatch,
        error.System => .system,
        error.Corrupt => .corrupt,
        error.SpillDisabled => .spill_disabled,
        error.Busy => .busy,
        error.PermissionDenied => .permission_denied,
        error.NoSpace => .no_space,
        error.SpillMissing => .spill_missing,
        error.ClusterAuth => .cluster_auth,
        error.Unavailable => .unavailable,
    };
}

pub fn message(status: Status) []const u8 {
    return switch (status) {
        .ok => "ok",
        .invalid_argument => "invalid argument",
        .exists => "an object with this id already exists",
        .absent => "no object with this id in the store",
        .not_sealed => "the object is still being written (not sealed yet)",
        .spilled => "the object is spilled to disk; restore it first",
        .store_full => "the object store is full",
        .index_full => "the store's object limit is reached",
        .timeout => "timed out",
        .clients_full => "too many processes attached to this store",
        .store_not_found => "no store with this name",
        .store_exists => "a store with this name already exists",
        .bad_store => "the shared segment is not an objstore store or is damaged",
        .abi_mismatch => "the store was created by an incompatible libobjstore version",
        .system => "a system call failed",
        .corrupt => "spilled object data failed its checksum",
        .spill_disabled => "spilling is disabled for this store",
        .busy => "the object is in use",
        .permission_denied => "permission denied",
        .no_space => "no space left on the spill device",
        .spill_missing => "the spill file of this object is missing",
        .cluster_auth => "a node did not accept the cluster token (or did not present it)",
        .unavailable => "no node holding the object could be reached",
    };
}

/// Free-form detail of the last failure on this thread (the store name, the sizes involved).
pub threadlocal var detail_buffer: [512]u8 = undefined;
pub threadlocal var detail_size_bytes: usize = 0;

pub fn setDetail(comptime fmt: []const u8, args: anytype) void {
    const text = std.fmt.bufPrint(&detail_buffer, fmt, args) catch blk: {
        break :blk detail_buffer[0..];
    };
    detail_size_bytes = text.len;
}

pub fn clearDetail() void {
    detail_size_bytes = 0;
}

pub fn detail() []const u8 {
    return detail_buffer[0..detail_size_bytes];
}
