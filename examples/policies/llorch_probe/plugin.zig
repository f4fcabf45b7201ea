//! `llorch-probe`: the compliance harness's probe of a policy host, seen from outside.
//!
//! An operator loads it on the admission hook of the orchestrator under test (see README.md);
//! the Gherkin scenarios of features/policy/ then trigger it through the task's `max_tokens`,
//! a field every client controls and ordinary traffic hardly ever sets to these values:
//!
//!   337  reject with reason `probe_rejected` and a retry hint (a typed refusal, HTTP 429)
//!   333  spin forever                 (the host's CPU bound must abort the call)
//!   334  allocate until memory fails  (the host's memory bound must abort the call)
//!   335  trap                         (a crash inside the plugin)
//!   336  answer an invalid decision   (the host must not act on it)
//!
//! Every other task: abstain. For 333..336 the host must fall back to its built-in rules, so
//! the task is admitted as if no plugin were loaded, and the queue keeps serving.

const std = @import("std");
const llorch = @import("llorch");

pub const plugin = llorch.Plugin{ .id = "llorch-probe", .version = "1.0.0" };

pub const Config = struct {};

pub fn admission(ctx: *llorch.Ctx(Config), s: llorch.AdmissionSnapshot) !llorch.AdmissionDecision {
    switch (s.task.max_tokens) {
        337 => return .{ .reject = .{
            .reason = "probe_rejected",
            .message = "llorch-probe refuses tasks with max_tokens 337",
            .retry_after_ms = 1000,
        } },
        333 => {
            var spin: u64 = 0;
            while (true) {
                spin +%= 1;
                std.mem.doNotOptimizeAway(spin);
            }
        },
        334 => {
            while (true) {
                const block = ctx.allocator.alloc(u8, 1 << 20) catch @trap();
                @memset(block, 0xAB);
                std.mem.doNotOptimizeAway(block.ptr);
            }
        },
        335 => @trap(),
        336 => return .{ .reject = .{ .reason = "Not A Typed Reason!" } },
        else => return .abstain,
    }
}

comptime {
    llorch.exportPlugin(@This());
}
