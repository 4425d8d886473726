//! The arena allocator: one bit per 64-byte block of the data region, set = in use.
//!
//! Callers hold the store's allocator lock. The bitmap is a cache of what the index says is
//! allocated, so after a process dies holding the lock it is rebuilt from the index instead
//! of trusting half-done updates. Next-fit from a shared cursor; runs of up to 64 blocks live
//! inside one word, longer runs start on a word (4 KiB) boundary.

const std = @import("std");
const assert = std.debug.assert;

const BlockBitmap = @This();

words: []u64,
block_count: u64,
/// Next-fit cursor, in words; lives in the shared header.
cursor_word: *u64,

pub fn init(words: []u64, block_count: u64, cursor_word: *u64) BlockBitmap {
    assert(block_count <= words.len * 64);
    assert(words.len * 64 - block_count < 64);
    return .{ .words = words, .block_count = block_count, .cursor_word = cursor_word };
}

/// Marks every block free, except the tail bits past `block_count`, which stay in use forever.
pub fn reset(self: BlockBitmap) void {
    @memset(self.words, 0);
    const tail_bits = self.words.len * 64 - self.block_count;
    if (tail_bits > 0) {
        const used_from: u6 = @intCast(64 - tail_bits);
        self.words[self.words.len - 1] = ~@as(u64, 0) << used_from;
    }
    self.cursor_word.* = 0;
}

/// Returns the first block of `block_count` free blocks, now marked used, or null.
pub fn alloc(self: BlockBitmap, block_count: u64) ?u64 {
    assert(block_count > 0);
    if (block_count > self.block_count) return null;
    const start = if (block_count <= 64)
        self.findInWord(@intCast(block_count))
    else
        self.findWordRun(block_count);
    const block = start orelse return null;
    self.setRange(block, block_count, true);
    return block;
}

pub fn free(self: BlockBitmap, block: u64, block_count: u64) void {
    assert(block + block_count <= self.block_count);
    self.setRange(block, block_count, false);
}

/// Marks an extent used while rebuilding from the index.
pub fn markUsed(self: BlockBitmap, block: u64, block_count: u64) void {
    self.setRange(block, block_count, true);
}

pub fn usedBlocks(self: BlockBitmap) u64 {
    var used: u64 = 0;
    for (self.words) |w| used += @popCount(w);
    return used - (self.words.len * 64 - self.block_count);
}

fn findInWord(self: BlockBitmap, run: u7) ?u64 {
    assert(run >= 1 and run <= 64);
    const word_count = self.words.len;
    var visited: usize = 0;
    var i: usize = @intCast(self.cursor_word.* % word_count);
    while (visited < word_count) : (visited += 1) {
        const w = self.words[i];
        if (w != ~@as(u64, 0)) {
            if (firstFreeRun(w, run)) |bit| {
                self.cursor_word.* = i;
                return @as(u64, i) * 64 + bit;
            }
        }
        i += 1;
        if (i == word_count) i = 0;
    }
    return null;
}

/// Finds `block_count` (> 64) free blocks starting on a word boundary: whole free words,
/// then the low bits of the next word.
fn findWordRun(self: BlockBitmap, block_count: u64) ?u64 {
    const full_words = block_count / 64;
    const rest_bits: u7 = @intCast(block_count % 64);
    const word_count = self.words.len;
    const needed_words = full_words + @intFromBool(rest_bits > 0);
    if (needed_words > word_count) return null;
    // Two passes over the words at most: from the cursor to the end, then from the start.
    var pass: u32 = 0;
    var start: usize = @intCast(self.cursor_word.* % word_count);
    while (pass < 2) : (pass += 1) {
        var run_start = start;
        var i = start;
        while (i < word_count) : (i += 1) {
            const in_run = i - run_start;
            const fits = if (in_run < full_words) self.words[i] == 0 else lowBitsFree(self.words[i], rest_bits);
            if (!fits) {
                run_start = i + 1;
                continue;
            }
            if (in_run + 1 == needed_words) {
                self.cursor_word.* = run_start + needed_words - 1;
                return @as(u64, run_start) * 64;
            }
        }
        start = 0;
    }
    return null;
}

fn lowBitsFree(w: u64, bits: u7) bool {
    assert(bits > 0 and bits < 64);
    const mask = (@as(u64, 1) << @intCast(bits)) - 1;
    return w & mask == 0;
}

/// The lowest bit position that starts `run` consecutive zero bits in `w`.
fn firstFreeRun(w: u64, run: u7) ?u6 {
    var free_bits = ~w;
    // After the loop, bit k is set iff bits k..k+covered-1 are all free.
    var covered: u7 = 1;
    while (covered < run) {
        const shift: u6 = @intCast(@min(covered, run - covered));
        free_bits &= free_bits >> shift;
        covered += shift;
    }
    if (free_bits == 0) return null;
    return @intCast(@ctz(free_bits));
}

fn setRange(self: BlockBitmap, block: u64, block_count: u64, used: bool) void {
    var b = block;
    const end = block + block_count;
    while (b < end) {
        const word_index: usize = @intCast(b / 64);
        const bit: u6 = @intCast(b % 64);
        const span: u64 = @min(64 - @as(u64, bit), end - b);
        const mask: u64 = if (span == 64) ~@as(u64, 0) else ((@as(u64, 1) << @intCast(span)) - 1) << bit;
        const w = &self.words[word_index];
        if (used) {
            assert(w.* & mask == 0); // double allocation
            w.* |= mask;
        } else {
            assert(w.* & mask == mask); // double free
            w.* &= ~mask;
        }
        b += span;
    }
}

fn testBitmap(words: []u64, blocks: u64, cursor: *u64) BlockBitmap {
    const bm = init(words, blocks, cursor);
    bm.reset();
    return bm;
}

test "firstFreeRun finds runs of every length" {
    try std.testing.expectEqual(@as(?u6, 0), firstFreeRun(0, 64));
    try std.testing.expectEqual(@as(?u6, null), firstFreeRun(1, 64));
    try std.testing.expectEqual(@as(?u6, 1), firstFreeRun(1, 63));
    try std.testing.expectEqual(@as(?u6, 4), firstFreeRun(0b1111, 3));
    try std.testing.expectEqual(@as(?u6, 8), firstFreeRun(0b1000_0000 | 0b0101, 5));
    try std.testing.expectEqual(@as(?u6, null), firstFreeRun(0xAAAA_AAAA_AAAA_AAAA, 2));
}

test "alloc and free keep counts and refuse what does not fit" {
    var words: [16]u64 = undefined;
    var cursor: u64 = 0;
    const bm = testBitmap(&words, 16 * 64 - 10, &cursor);
    try std.testing.expectEqual(@as(u64, 0), bm.usedBlocks());
    const a = bm.alloc(1).?;
    const b = bm.alloc(64).?;
    const c = bm.alloc(200).?;
    try std.testing.expectEqual(@as(u64, 0), c % 64);
    try std.testing.expectEqual(@as(u64, 265), bm.usedBlocks());
    try std.testing.expect(bm.alloc(16 * 64) == null);
    bm.free(b, 64);
    bm.free(a, 1);
    bm.free(c, 200);
    try std.testing.expectEqual(@as(u64, 0), bm.usedBlocks());
    // The whole capacity is usable once empty.
    const all = bm.alloc(15 * 64).?;
    try std.testing.expectEqual(@as(u64, 0), all);
}

test "random alloc/free never overlaps and returns every block" {
    var words: [64]u64 = undefined;
    var cursor: u64 = 0;
    const bm = testBitmap(&words, 64 * 64, &cursor);
    var prng = std.Random.DefaultPrng.init(42);
    const random = prng.random();
    var live_block: [128]u64 = undefined;
    var live_count: [128]u64 = undefined;
    var live_len: usize = 0;
    var step: u32 = 0;
    while (step < 20_000) : (step += 1) {
        if (live_len < live_block.len and random.boolean()) {
            const n = random.intRangeAtMost(u64, 1, 300);
            if (bm.alloc(n)) |blk| {
                live_block[live_len] = blk;
                live_count[live_len] = n;
                live_len += 1;
            }
        } else if (live_len > 0) {
            const k = random.uintLessThan(usize, live_len);
            bm.free(live_block[k], live_count[k]); // asserts on double free / overlap
            live_len -= 1;
            live_block[k] = live_block[live_len];
            live_count[k] = live_count[live_len];
        }
    }
    while (live_len > 0) : (live_len -= 1) bm.free(live_block[live_len - 1], live_count[live_len - 1]);
    try std.testing.expectEqual(@as(u64, 0), bm.usedBlocks());
}
