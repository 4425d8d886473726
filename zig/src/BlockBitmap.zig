//! The arena allocator: one bit per 64-byte block of the data region, set = in use.
//!
//! Callers hold the store's allocator lock. The bitmap is a cache of what the index says is
//! allocated, so after a process dies holding the lock it is rebuilt from the index instead
//! of trusting half-done updates. Runs of up to 64 blocks live inside one word, longer runs
//! start on a word (4 KiB) boundary.
//!
//! Placement: next-fit from a shared cursor, but only over the words handed out before (the
//! "touched" words, whose pages are resident); untouched memory is taken only when no run
//! fits there. A tmpfs page costs a fault and a zeroing on its first touch (~1 GB/s here,
//! against ~10 GB/s for a copy into a resident page), so reusing freed memory first is what
//! lets a loop of large puts and frees copy at memcpy speed instead of walking a cold arena.

const std = @import("std");
const assert = std.debug.assert;

const BlockBitmap = @This();

words: []u64,
block_count: u64,
/// Next-fit cursor, in words; lives in the shared header.
cursor_word: *u64,
/// Words below this were handed out before (or prefaulted); lives in the shared header and
/// only grows. A hint: a wrong value costs speed, never correctness.
touched_end_word: *u64,
/// The touched end grows by whole grains, so that once the touched words are full the next
/// grain's worth of small runs does not each scan all of them first.
touched_grain_words: u64,

pub fn init(words: []u64, block_count: u64, cursor_word: *u64, touched_end_word: *u64, touched_grain_words: u64) BlockBitmap {
    assert(block_count <= words.len * 64);
    assert(words.len * 64 - block_count < 64);
    assert(touched_grain_words > 0);
    return .{
        .words = words,
        .block_count = block_count,
        .cursor_word = cursor_word,
        .touched_end_word = touched_end_word,
        .touched_grain_words = touched_grain_words,
    };
}

/// Marks every block free, except the tail bits past `block_count`, which stay in use forever.
/// The touched end is kept: the pages stay resident whatever the bitmap says.
pub fn reset(self: BlockBitmap) void {
    @memset(self.words, 0);
    const tail_bits = self.words.len * 64 - self.block_count;
    if (tail_bits > 0) {
        const used_from: u6 = @intCast(64 - tail_bits);
        self.words[self.words.len - 1] = ~@as(u64, 0) << used_from;
    }
    self.cursor_word.* = 0;
}

/// Counts the first `block_count` blocks as touched (the prefaulted part of the arena).
pub fn markTouched(self: BlockBitmap, block_count: u64) void {
    const end_word = @min(self.words.len, std.math.divCeil(u64, block_count, 64) catch unreachable);
    if (end_word > self.touched_end_word.*) self.touched_end_word.* = end_word;
}

/// Returns the first block of `block_count` free blocks, now marked used, or null.
pub fn alloc(self: BlockBitmap, block_count: u64) ?u64 {
    assert(block_count > 0);
    if (block_count > self.block_count) return null;
    const block = self.find(block_count) orelse return null;
    self.setRange(block, block_count, true);
    self.growTouched(block + block_count);
    return block;
}

/// Frees a run. When the cursor is on it (the run allocated last, usually), the cursor goes back
/// to its start, so the next allocation reuses memory still in the CPU's caches: a put-and-free
/// loop of 1 MiB objects copied at a third of memcpy's speed while it walked the arena.
pub fn free(self: BlockBitmap, block: u64, block_count: u64) void {
    assert(block + block_count <= self.block_count);
    self.setRange(block, block_count, false);
    const first_word = block / 64;
    const last_word = (block + block_count - 1) / 64;
    if (self.cursor_word.* >= first_word and self.cursor_word.* <= last_word) self.cursor_word.* = first_word;
}

/// Marks an extent used while rebuilding from the index.
pub fn markUsed(self: BlockBitmap, block: u64, block_count: u64) void {
    self.setRange(block, block_count, true);
    self.growTouched(block + block_count);
}

pub fn usedBlocks(self: BlockBitmap) u64 {
    var used: u64 = 0;
    for (self.words) |w| used += @popCount(w);
    return used - (self.words.len * 64 - self.block_count);
}

/// Next-fit within the touched words (from the cursor to their end, then from their start),
/// then the first fit that reaches into untouched memory.
fn find(self: BlockBitmap, block_count: u64) ?u64 {
    const word_count = self.words.len;
    const touched = @min(self.touched_end_word.*, word_count);
    const cursor = if (touched == 0) 0 else self.cursor_word.* % touched;
    const needed_words = std.math.divCeil(u64, block_count, 64) catch unreachable;
    // A run the touched words could not hold must end past them, so it starts at most
    // `needed_words` words before their end.
    const untouched_from = touched -| needed_words;
    return self.findIn(block_count, cursor, touched) orelse
        self.findIn(block_count, 0, touched) orelse
        self.findIn(block_count, untouched_from, word_count);
}

/// The first run of `block_count` free blocks lying within words [from_word, to_word).
fn findIn(self: BlockBitmap, block_count: u64, from_word: u64, to_word: u64) ?u64 {
    assert(to_word <= self.words.len);
    if (from_word >= to_word) return null;
    return if (block_count <= 64)
        self.findInWord(@intCast(block_count), from_word, to_word)
    else
        self.findWordRun(block_count, from_word, to_word);
}

fn findInWord(self: BlockBitmap, run: u7, from_word: u64, to_word: u64) ?u64 {
    assert(run >= 1 and run <= 64);
    var i: usize = @intCast(from_word);
    while (i < to_word) : (i += 1) {
        const w = self.words[i];
        if (w == ~@as(u64, 0)) continue;
        if (firstFreeRun(w, run)) |bit| {
            self.cursor_word.* = i;
            return @as(u64, i) * 64 + bit;
        }
    }
    return null;
}

/// Finds `block_count` (> 64) free blocks starting on a word boundary: whole free words,
/// then the low bits of the next word.
fn findWordRun(self: BlockBitmap, block_count: u64, from_word: u64, to_word: u64) ?u64 {
    const full_words = block_count / 64;
    const rest_bits: u7 = @intCast(block_count % 64);
    const needed_words = full_words + @intFromBool(rest_bits > 0);
    if (needed_words > to_word - from_word) return null;
    var run_start: usize = @intCast(from_word);
    var i: usize = run_start;
    while (i < to_word) : (i += 1) {
        const in_run = i - run_start;
        const fits = if (in_run < full_words) self.words[i] == 0 else lowBitsFree(self.words[i], rest_bits);
        if (!fits) {
            run_start = i + 1;
            if (needed_words > to_word - run_start) return null;
            continue;
        }
        if (in_run + 1 == needed_words) {
            self.cursor_word.* = run_start + needed_words - 1;
            return @as(u64, run_start) * 64;
        }
    }
    return null;
}

fn growTouched(self: BlockBitmap, end_block: u64) void {
    const end_word = std.math.divCeil(u64, end_block, 64) catch unreachable;
    if (end_word <= self.touched_end_word.*) return;
    const grown = std.mem.alignForward(u64, end_word, self.touched_grain_words);
    self.touched_end_word.* = @min(grown, self.words.len);
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

/// The shared words a bitmap keeps outside itself (the header's, in a store).
const TestShared = struct { cursor_word: u64 = 0, touched_end_word: u64 = 0 };

fn testBitmap(words: []u64, blocks: u64, shared: *TestShared, grain_words: u64) BlockBitmap {
    const bm = init(words, blocks, &shared.cursor_word, &shared.touched_end_word, grain_words);
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
    var shared: TestShared = .{};
    const bm = testBitmap(&words, 16 * 64 - 10, &shared, 1);
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
    var shared: TestShared = .{};
    const bm = testBitmap(&words, 64 * 64, &shared, 4);
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

test "freed touched memory is reused before untouched memory" {
    var words: [64]u64 = undefined;
    var shared: TestShared = .{};
    const bm = testBitmap(&words, 64 * 64, &shared, 1);
    // A put-and-free loop of large runs, with a small object made before each: the large runs
    // stay in the memory the first two took, instead of walking through the whole arena.
    var round: u32 = 0;
    while (round < 20) : (round += 1) {
        const small = bm.alloc(3).?;
        const large = bm.alloc(10 * 64).?;
        try std.testing.expect(large + 10 * 64 <= 21 * 64);
        bm.free(large, 10 * 64);
        bm.free(small, 3);
    }
    try std.testing.expect(shared.touched_end_word <= 21);
    // Untouched memory is still used when the touched part cannot hold a run.
    const a = bm.alloc(10 * 64).?;
    const b = bm.alloc(10 * 64).?;
    try std.testing.expect(b >= a + 10 * 64 or a >= b + 10 * 64);
    try std.testing.expectEqual(@as(u64, 20 * 64), bm.usedBlocks());
}

test "the touched end grows by grains and survives a reset" {
    var words: [64]u64 = undefined;
    var shared: TestShared = .{};
    const bm = testBitmap(&words, 64 * 64 - 5, &shared, 16);
    try std.testing.expectEqual(@as(u64, 0), shared.touched_end_word);
    _ = bm.alloc(1).?;
    try std.testing.expectEqual(@as(u64, 16), shared.touched_end_word);
    // Small runs fill the grain before anything past it is taken.
    var k: u32 = 1;
    while (k < 16 * 64) : (k += 1) try std.testing.expect(bm.alloc(1).? < 16 * 64);
    try std.testing.expect(bm.alloc(1).? >= 16 * 64);
    try std.testing.expectEqual(@as(u64, 32), shared.touched_end_word);
    // The last grain stops at the end of the bitmap.
    _ = bm.alloc(40 * 64).?;
    try std.testing.expectEqual(@as(u64, 64), shared.touched_end_word);
    bm.reset();
    try std.testing.expectEqual(@as(u64, 64), shared.touched_end_word);
    bm.markTouched(3);
    try std.testing.expectEqual(@as(u64, 64), shared.touched_end_word);
}

test "a prefaulted arena counts as touched" {
    var words: [64]u64 = undefined;
    var shared: TestShared = .{};
    const bm = testBitmap(&words, 64 * 64, &shared, 64);
    bm.markTouched(8 * 64 + 1);
    try std.testing.expectEqual(@as(u64, 9), shared.touched_end_word);
    const a = bm.alloc(4 * 64).?;
    bm.free(a, 4 * 64);
    const b = bm.alloc(4 * 64).?;
    try std.testing.expect(b + 4 * 64 <= 9 * 64);
    try std.testing.expectEqual(@as(u64, 9), shared.touched_end_word);
}

test "a run freed right after it was allocated is reused next" {
    var words: [64]u64 = undefined;
    var shared: TestShared = .{};
    const bm = testBitmap(&words, 64 * 64, &shared, 64);
    _ = bm.alloc(5).?; // something before, as in a store in use
    var round: u32 = 0;
    var first: ?u64 = null;
    while (round < 10) : (round += 1) {
        const run = bm.alloc(3 * 64 + 5).?;
        if (first) |f| try std.testing.expectEqual(f, run) else first = run;
        bm.free(run, 3 * 64 + 5);
    }
}
