//! Admission plugin: refuse a task when its tenant would go over a token budget.
//!
//! A tenant's load is the tokens its queued and running tasks in the pool reserve (prompt plus
//! max_tokens, `tenant.tokens_in_flight` in the snapshot) plus the new task's own. Budgets come
//! from the operator's config; tenants without one are not limited by this plugin.
//!
//!     config: {budgets: {tenant-a: 2048}, default_budget: null, retry_after_ms: 2000}

const std = @import("std");
const llorch = @import("llorch");

pub const plugin = llorch.Plugin{ .id = "admission-budget", .version = "1.0.0" };

pub const Config = struct {
    budgets: std.json.ArrayHashMap(u64) = .{},
    default_budget: ?u64 = null,
    retry_after_ms: u64 = 2000,
};

pub fn admission(ctx: *llorch.Ctx(Config), s: llorch.AdmissionSnapshot) !llorch.AdmissionDecision {
    const budget = ctx.config.budgets.map.get(s.task.tenant) orelse ctx.config.default_budget orelse
        return .abstain;
    const wanted = s.tenant.tokens_in_flight + s.task.tokens();
    if (wanted <= budget) return .admit;
    const left = if (budget > s.tenant.tokens_in_flight) budget - s.tenant.tokens_in_flight else 0;
    return .{ .reject = .{
        .reason = "tenant_over_budget",
        .message = try std.fmt.allocPrint(
            ctx.allocator,
            "tenant {s}: {d} tokens needed, {d} of {d} left",
            .{ s.task.tenant, s.task.tokens(), left, budget },
        ),
        // Only a task that fits the budget on its own can succeed later.
        .retry_after_ms = if (s.task.tokens() <= budget) ctx.config.retry_after_ms else null,
    } };
}

comptime {
    llorch.exportPlugin(@This());
}
