//! Placement plugin: prefer replicas whose label matches, then the least loaded of the rest.
//!
//! The host offers the replicas that could take the task now (each with its labels, as the
//! operator set them); this plugin ranks those carrying `label: value` first. When none
//! carries it, it abstains and the core's own choice (least loaded) stands.
//!
//!     config: {label: tier, value: fast}

const std = @import("std");
const llorch = @import("llorch");

pub const plugin = llorch.Plugin{ .id = "placement-label", .version = "1.0.0" };

pub const Config = struct {
    label: []const u8 = "tier",
    value: []const u8 = "preferred",
};

pub fn placement(ctx: *llorch.Ctx(Config), s: llorch.PlacementSnapshot) !llorch.PlacementDecision {
    var ids = std.ArrayList([]const u8).init(ctx.allocator);
    for (s.candidates) |c| {
        const v = c.label(ctx.config.label) orelse continue;
        if (std.mem.eql(u8, v, ctx.config.value)) try ids.append(c.replica_id);
    }
    if (ids.items.len == 0) return .abstain;
    return .{ .prefer = ids.items };
}

comptime {
    llorch.exportPlugin(@This());
}
