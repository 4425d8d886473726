//! `zig build` → zig-out/lib/libobjstore.so; `zig build test` → unit tests and the
//! multi-process stress and crash tests; `zig build bench` → the native benchmarks.

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
