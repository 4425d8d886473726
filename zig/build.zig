//! `zig build` → zig-out/lib/libobjstore.so; `zig build test` → unit tests and the
//! multi-process stress and crash tests; `zig build bench` → the native benchmarks;
//! `zig build packages` → zig-out/npm/<platform>/libobjstore.so for every npm platform package.

const std = @import("std");

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{});
    const optimize = b.standardOptimizeOption(.{ .preferred_optimize_mode = .ReleaseSafe });
    const stress_seconds = b.option(u32, "stress-seconds", "How long the multi-process stress test runs") orelse 20;

    const core = b.createModule(.{
        .root_source_file = b.path("src/lib.zig"),
        .target = target,
        .optimize = optimize,
        .link_libc = true,
    });
    const lib = b.addLibrary(.{ .name = "objstore", .linkage = .dynamic, .root_module = core });
    lib.installHeader(b.path("include/objstore.h"), "objstore.h");
    b.installArtifact(lib);

    const unit_tests = b.addTest(.{ .root_module = core });
    const run_unit_tests = b.addRunArtifact(unit_tests);

    const stress = b.addExecutable(.{
        .name = "objstore-stress",
        .root_module = b.createModule(.{
            .root_source_file = b.path("tests/stress.zig"),
            .target = target,
            .optimize = optimize,
            .link_libc = true,
            .imports = &.{.{ .name = "objstore", .module = core }},
        }),
    });
    b.installArtifact(stress);
    const run_stress = b.addRunArtifact(stress);
    run_stress.addArgs(&.{ "--seconds", b.fmt("{d}", .{stress_seconds}) });
    run_stress.step.dependOn(&run_unit_tests.step);

    const test_step = b.step("test", "Unit tests, then the multi-process stress and crash tests");
    test_step.dependOn(&run_unit_tests.step);
    test_step.dependOn(&run_stress.step);

    // The benchmark always measures an optimized core, whatever the build's mode.
    addPackagesStep(b);

    const bench_core = b.createModule(.{
        .root_source_file = b.path("src/lib.zig"),
        .target = target,
        .optimize = .ReleaseSafe,
        .link_libc = true,
    });
    const bench = b.addExecutable(.{
        .name = "objstore-bench",
        .root_module = b.createModule(.{
            .root_source_file = b.path("bench/bench.zig"),
            .target = target,
            .optimize = .ReleaseFast,
            .link_libc = true,
            .imports = &.{.{ .name = "objstore", .module = bench_core }},
        }),
    });
    b.installArtifact(bench);
    const run_bench = b.addRunArtifact(bench);
    run_bench.addPassthruArgs();
    b.step("bench", "Native benchmarks (see bench/README.md)").dependOn(&run_bench.step);
}

/// The platforms of the npm packages `@objstore/core-<name>` (scripts/pack.sh).
const Platform = struct {
    name: []const u8,
    /// A glibc floor in the triple: the library loads on any glibc from 2.28 (2018) on.
    triple: []const u8,
    /// x86-64-v2 (2009 on) has the `crc32` instruction the spill checksums use; Zig's default
    /// for a cross build, baseline x86-64, would checksum through a table, several times slower.
    cpu: []const u8,
};

const platforms = [_]Platform{
    .{ .name = "linux-x64-gnu", .triple = "x86_64-linux-gnu.2.28", .cpu = "x86_64_v2" },
    .{ .name = "linux-arm64-gnu", .triple = "aarch64-linux-gnu.2.28", .cpu = "baseline+crc" },
    .{ .name = "linux-x64-musl", .triple = "x86_64-linux-musl", .cpu = "x86_64_v2" },
    .{ .name = "linux-arm64-musl", .triple = "aarch64-linux-musl", .cpu = "baseline+crc" },
};

/// ReleaseFast and stripped, one library per platform: what users install, never built by them.
fn addPackagesStep(b: *std.Build) void {
    const step = b.step("packages", "libobjstore.so for every npm platform package, into zig-out/npm/<platform>/");
    for (platforms) |platform| {
        const query = std.Target.Query.parse(.{
            .arch_os_abi = platform.triple,
            .cpu_features = platform.cpu,
        }) catch |err| std.debug.panic("bad target {s}: {t}", .{ platform.triple, err });
        const module = b.createModule(.{
            .root_source_file = b.path("src/lib.zig"),
            .target = b.resolveTargetQuery(query),
            .optimize = .ReleaseFast,
            .link_libc = true,
            .strip = true,
        });
        const library = b.addLibrary(.{ .name = "objstore", .linkage = .dynamic, .root_module = module });
        const install = b.addInstallArtifact(library, .{
            .dest_dir = .{ .override = .{ .custom = b.fmt("npm/{s}", .{platform.name}) } },
            .dylib_symlinks = false,
        });
        step.dependOn(&install.step);
    }
}
