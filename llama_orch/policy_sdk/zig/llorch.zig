//! llama-orch policy SDK for Zig (SDK 1.0, plugin ABI 1.0, tool ABI 1.0).
//!
//! A plugin is one Zig file that imports this module, declares `plugin` (id and version), an
//! optional `Config` struct (parsed from the operator's `config`, every field defaulted), and
//! one function per hook it implements:
//!
//!     pub fn admission(ctx: *llorch.Ctx(Config), s: llorch.AdmissionSnapshot) !llorch.AdmissionDecision
//!     pub fn placement(ctx: *llorch.Ctx(Config), s: llorch.PlacementSnapshot) !llorch.PlacementDecision
//!     pub fn session(ctx: *llorch.Ctx(Config), s: llorch.SessionSnapshot) !llorch.SessionDecision
//!
//! and ends with `comptime { llorch.exportPlugin(@This()); }`, which emits the ABI exports.
//! An optional `pub fn redact(allocator, text) ![]const u8` adds the author's own redaction
//! after the SDK's rules.
//!
//! The SDK performs no I/O: it imports nothing from WASI, and the only host functions it
//! references (`llorch.tool_call`, `llorch.tool_read`) are linked in only when the plugin calls
//! `fetch` or `search`. Public names here keep their signature and behaviour for the whole
//! SDK 1.x line (CHANGELOG.md says how breaking changes are released).

const std = @import("std");
const redact = @import("redact.zig");

pub const redactText = redact.redactText;
pub const redacted = redact.redacted;
pub const default_query_params = redact.default_query_params;
pub const secret_prefixes = redact.secret_prefixes;

pub const abi_major: u32 = 1;
pub const abi_minor: u32 = 0;
pub const sdk_version = "1.0.0";
pub const tool_abi = "1.0";

/// Every call runs in a fresh instance that the host drops afterwards, so nothing is freed.
pub const allocator = std.heap.wasm_allocator;

// -- snapshot types (policy-abi-v1.schema.json) ------------------------------------------------

pub const Priority = enum { interactive, batch };

pub const Task = struct {
    tenant: []const u8,
    pool_id: []const u8,
    engine: []const u8,
    priority: Priority,
    ctx: u64,
    prompt_tokens: u64,
    max_tokens: u64,
    deadline_ms: ?u64 = null,
    pinned: bool = false,

    /// Tokens the task reserves: its prompt plus everything it may generate.
    pub fn tokens(self: Task) u64 {
        return self.prompt_tokens + self.max_tokens;
    }
};

pub const Pool = struct {
    pool_id: []const u8,
    engine: []const u8,
    queued: u64,
    capacity: u64,
    running: u64,
    slots_free: u64,
    slots_total: u64,
    draining: bool,
};

pub const TenantUsage = struct {
    tenant: []const u8,
    queued: u64,
    running: u64,
    tokens_in_flight: u64,
};

pub const Session = struct {
    turns: u64,
    inflight: u64,
    age_ms: u64,
    idle_ms: u64,
    tokens_used: u64,
    tokens_reserved: u64,
    time_used_ms: u64,
};

pub const SessionLimits = struct {
    ttl_ms: u64,
    max_turns: u64,
    token_budget: ?u64 = null,
    time_budget_ms: ?u64 = null,
};

pub const Labels = std.json.ArrayHashMap([]const u8);

pub const Candidate = struct {
    replica_id: []const u8,
    load: f64,
    slots_free: u64,
    slots_total: u64,
    labels: Labels = .{},

    /// The value of label `key`, or null.
    pub fn label(self: Candidate, key: []const u8) ?[]const u8 {
        return self.labels.map.get(key);
    }
};

pub const AdmissionSnapshot = struct {
    task: Task,
    pool: Pool,
    tenant: TenantUsage,
    session: ?Session = null,
};

pub const PlacementSnapshot = struct {
    task: Task,
    pool: Pool,
    candidates: []const Candidate,
    affinity: ?[]const u8 = null,
};

pub const SessionSnapshot = struct {
    task: Task,
    session: Session,
    limits: SessionLimits,
};

// -- decisions ---------------------------------------------------------------------------------

pub const Rejection = struct {
    /// lower snake_case, stable: clients and dashboards key on it
    reason: []const u8,
    message: ?[]const u8 = null,
    /// set: the refusal is retriable (HTTP 429 with Retry-After); null: it is final (400)
    retry_after_ms: ?u64 = null,
};

pub const Ending = struct {
    reason: []const u8,
    message: ?[]const u8 = null,
};

pub const AdmissionDecision = union(enum) {
    abstain,
    admit,
    reject: Rejection,
};

pub const PlacementDecision = union(enum) {
    abstain,
    /// replica ids, most preferred first; ids that are not candidates make the decision invalid
    prefer: []const []const u8,
};

pub const SessionDecision = union(enum) {
    abstain,
    @"continue",
    end: Ending,
};

pub const Plugin = struct {
    id: []const u8,
    version: []const u8,
};

// -- call context ------------------------------------------------------------------------------

pub const RedactionConfig = redact.RedactionConfig;

/// What a hook gets besides its snapshot: the operator's config for this plugin, an
/// allocator, the redaction settings and the correlation id tool calls forward.
pub fn Ctx(comptime Config: type) type {
    return struct {
        allocator: std.mem.Allocator,
        config: Config,
        redaction: RedactionConfig,
        correlation_id: ?[]const u8,
        redact_hook: ?*const fn (std.mem.Allocator, []const u8) anyerror![]const u8 = null,

        const Self = @This();

        /// Apply the SDK's redaction rules, then the author's hook, to `text`.
        pub fn redact(self: *const Self, text: []const u8) ![]const u8 {
            return redactText(self.allocator, self.redaction, self.redact_hook, text);
        }
    };
}

// -- exports -----------------------------------------------------------------------------------

fn abiExport() callconv(.c) u32 {
    return (abi_major << 16) | abi_minor;
}

fn allocExport(len: u32) callconv(.c) u32 {
    const buf = allocator.alloc(u8, @max(len, 1)) catch return 0;
    return @intFromPtr(buf.ptr);
}

fn pack(bytes: []const u8) u64 {
    return (@as(u64, @intFromPtr(bytes.ptr)) << 32) | @as(u64, @intCast(bytes.len));
}

fn errorResult(err: anyerror) u64 {
    var out = std.ArrayList(u8).init(allocator);
    std.json.stringify(.{ .@"error" = @errorName(err) }, .{}, out.writer()) catch return 0;
    return pack(out.items);
}

/// Emit the ABI exports for plugin `P` (call as `comptime { llorch.exportPlugin(@This()); }`).
pub fn exportPlugin(comptime P: type) void {
    const Config = if (@hasDecl(P, "Config")) P.Config else struct {};
    const E = struct {
        fn info() callconv(.c) u64 {
            var out = std.ArrayList(u8).init(allocator);
            const value = .{ .id = P.plugin.id, .version = P.plugin.version, .sdk = sdk_version };
            std.json.stringify(value, .{}, out.writer()) catch return 0;
            return pack(out.items);
        }
        fn admission(ptr: u32, len: u32) callconv(.c) u64 {
            return call(Config, AdmissionSnapshot, P, P.admission, ptr, len);
        }
        fn placement(ptr: u32, len: u32) callconv(.c) u64 {
            return call(Config, PlacementSnapshot, P, P.placement, ptr, len);
        }
        fn session(ptr: u32, len: u32) callconv(.c) u64 {
            return call(Config, SessionSnapshot, P, P.session, ptr, len);
        }
    };
    @export(&abiExport, .{ .name = "llorch_abi" });
    @export(&allocExport, .{ .name = "llorch_alloc" });
    @export(&E.info, .{ .name = "llorch_info" });
    if (@hasDecl(P, "admission")) @export(&E.admission, .{ .name = "llorch_admission" });
    if (@hasDecl(P, "placement")) @export(&E.placement, .{ .name = "llorch_placement" });
    if (@hasDecl(P, "session")) @export(&E.session, .{ .name = "llorch_session" });
}

const parse_options = std.json.ParseOptions{
    .ignore_unknown_fields = true,
    .allocate = .alloc_always,
};

fn Envelope(comptime Config: type, comptime Snapshot: type) type {
    return struct {
        abi: []const u8,
        hook: []const u8,
        config: Config = .{},
        correlation_id: ?[]const u8 = null,
        snapshot: Snapshot,
    };
}

const RedactionEnvelope = struct {
    config: struct { redaction: RedactionConfig = .{} } = .{},
};

fn call(
    comptime Config: type,
    comptime Snapshot: type,
    comptime P: type,
    comptime hook: anytype,
    ptr: u32,
    len: u32,
) u64 {
    const input: []const u8 = @as([*]const u8, @ptrFromInt(ptr))[0..len];
    return callInner(Config, Snapshot, P, hook, input) catch |err| errorResult(err);
}

fn callInner(
    comptime Config: type,
    comptime Snapshot: type,
    comptime P: type,
    comptime hook: anytype,
    input: []const u8,
) !u64 {
    const env = try std.json.parseFromSliceLeaky(Envelope(Config, Snapshot), allocator, input, parse_options);
    const red = try std.json.parseFromSliceLeaky(RedactionEnvelope, allocator, input, parse_options);
    var ctx = Ctx(Config){
        .allocator = allocator,
        .config = env.config,
        .redaction = red.config.redaction,
        .correlation_id = env.correlation_id,
        .redact_hook = if (@hasDecl(P, "redact")) &P.redact else null,
    };
    const decision = try hook(&ctx, env.snapshot);
    var out = std.ArrayList(u8).init(allocator);
    try writeDecision(&ctx, decision, out.writer());
    return pack(out.items);
}

fn writeDecision(ctx: anytype, decision: anytype, w: anytype) !void {
    const opts = std.json.StringifyOptions{ .emit_null_optional_fields = false };
    switch (decision) {
        inline else => |payload, tag| {
            const name = @tagName(tag);
            const T = @TypeOf(payload);
            if (T == void) {
                try w.writeAll("{\"decision\":\"" ++ name ++ "\"}");
            } else if (T == Rejection) {
                try std.json.stringify(.{
                    .decision = name,
                    .reason = payload.reason,
                    .message = if (payload.message) |m| try ctx.redact(m) else null,
                    .retry_after_ms = payload.retry_after_ms,
                }, opts, w);
            } else if (T == Ending) {
                try std.json.stringify(.{
                    .decision = name,
                    .reason = payload.reason,
                    .message = if (payload.message) |m| try ctx.redact(m) else null,
                }, opts, w);
            } else {
                try std.json.stringify(.{ .decision = name, .replicas = payload }, opts, w);
            }
        },
    }
}

// -- mediated tools (host functions, linked only when used) ------------------------------------

extern "llorch" fn tool_call(ptr: u32, len: u32) u32;
extern "llorch" fn tool_read(ptr: u32) void;

pub const Hints = struct {
    /// domains the caller expects to need; the host's allow/deny lists still decide
    allowed_domains: ?[]const []const u8 = null,
    /// the most response bytes the caller wants; the host's own cap still applies
    max_bytes: ?u64 = null,
};

pub const SearchHit = struct {
    title: []const u8,
    url: []const u8,
    snippet: []const u8,
};

pub const ToolResult = struct {
    tool_abi: []const u8,
    tool: []const u8,
    decision: []const u8,
    reason: []const u8,
    status: ?i64 = null,
    mime: ?[]const u8 = null,
    bytes: u64 = 0,
    truncated: bool = false,
    body: ?[]const u8 = null,
    results: []const SearchHit = &.{},

    pub fn allowed(self: ToolResult) bool {
        return std.mem.eql(u8, self.decision, "allow");
    }
};

fn invoke(ctx: anytype, tool: []const u8, args: anytype, hints: Hints) !ToolResult {
    var req = std.ArrayList(u8).init(ctx.allocator);
    try std.json.stringify(.{
        .tool_abi = tool_abi,
        .tool = tool,
        .args = args,
        .hints = hints,
        .correlation_id = ctx.correlation_id,
    }, .{ .emit_null_optional_fields = false }, req.writer());
    const n = tool_call(@intFromPtr(req.items.ptr), @intCast(req.items.len));
    if (n == 0) return error.ToolUnavailable;
    const buf = try ctx.allocator.alloc(u8, n);
    tool_read(@intFromPtr(buf.ptr));
    return std.json.parseFromSliceLeaky(ToolResult, ctx.allocator, buf, parse_options);
}

/// HTTP GET through the host's mediated fetch; the URL is redacted before it leaves the plugin.
pub fn fetch(ctx: anytype, url: []const u8, hints: Hints) !ToolResult {
    const safe = try ctx.redact(url);
    return invoke(ctx, "fetch", .{ .url = safe }, hints);
}

/// A web search through the host's mediated search; the query is redacted first.
pub fn search(ctx: anytype, query: []const u8, max_results: u32, hints: Hints) !ToolResult {
    const safe = try ctx.redact(query);
    return invoke(ctx, "search", .{ .query = safe, .max_results = max_results }, hints);
}
