//! Redaction of the policy SDK (part of the `llorch` module; see llorch.zig): what leaves a
//! plugin (tool inputs, decision messages) loses URL credentials, credential-like query values,
//! credential-shaped words, e-mail addresses and configured literals, then passes the author's
//! own hook. Pure string work: no I/O.

const std = @import("std");

pub const RedactionConfig = struct {
    /// query parameters whose values are replaced, on top of the built-in list
    query_params: []const []const u8 = &.{},
    /// literal strings that never leave the plugin
    literals: []const []const u8 = &.{},
    emails: bool = true,
    enabled: bool = true,
};


pub const redacted = "[REDACTED]";

/// Query parameters whose values are always redacted (case-insensitive).
pub const default_query_params = [_][]const u8{
    "token",     "access_token", "api_key", "apikey", "key",  "password",
    "passwd",    "secret",       "sig",     "signature", "auth", "session",
};

/// Prefixes of well-known credential formats (cloud keys, chat and VCS tokens).
pub const secret_prefixes = [_][]const u8{ "sk-", "ghp_", "gho_", "github_pat_", "xoxb-", "xoxp-", "AKIA" };

fn isParamChar(c: u8) bool {
    return c != '&' and c != '#' and c != ' ' and c != '"' and c != '\'';
}

fn isWordChar(c: u8) bool {
    return std.ascii.isAlphanumeric(c) or c == '-' or c == '_' or c == '.' or c == '+' or c == '@' or c == '/';
}

fn sensitiveParam(cfg: RedactionConfig, name: []const u8) bool {
    for (default_query_params) |p| if (std.ascii.eqlIgnoreCase(p, name)) return true;
    for (cfg.query_params) |p| if (std.ascii.eqlIgnoreCase(p, name)) return true;
    return false;
}

/// Redact URL credentials (`user:pass@`), sensitive query values, credential-shaped words,
/// e-mail addresses and configured literals; then run the author's hook, if any.
pub fn redactText(
    a: std.mem.Allocator,
    cfg: RedactionConfig,
    hook: ?*const fn (std.mem.Allocator, []const u8) anyerror![]const u8,
    text: []const u8,
) ![]const u8 {
    if (!cfg.enabled) return if (hook) |h| h(a, text) else text;
    var out = std.ArrayList(u8).init(a);
    var i: usize = 0;
    while (i < text.len) {
        // user:pass@ right after a scheme
        if (std.mem.startsWith(u8, text[i..], "://")) {
            try out.appendSlice("://");
            i += 3;
            const rest = text[i..];
            var end: usize = 0;
            while (end < rest.len and rest[end] != '/' and rest[end] != '?' and rest[end] != ' ') : (end += 1) {}
            if (std.mem.lastIndexOfScalar(u8, rest[0..end], '@')) |at| {
                try out.appendSlice(redacted);
                try out.append('@');
                i += at + 1;
            }
            continue;
        }
        // name=value inside a query string
        if ((text[i] == '?' or text[i] == '&') and i + 1 < text.len) {
            try out.append(text[i]);
            i += 1;
            const eq = std.mem.indexOfScalarPos(u8, text, i, '=') orelse continue;
            const name = text[i..eq];
            var ok = name.len > 0;
            for (name) |c| ok = ok and isParamChar(c) and c != '?';
            if (!ok) continue;
            var end = eq + 1;
            while (end < text.len and isParamChar(text[end])) : (end += 1) {}
            try out.appendSlice(text[i .. eq + 1]);
            try out.appendSlice(if (sensitiveParam(cfg, name)) redacted else text[eq + 1 .. end]);
            i = end;
            continue;
        }
        // a word: credential-shaped, an e-mail address, or plain text
        if (isWordChar(text[i]) and (i == 0 or !isWordChar(text[i - 1]))) {
            var end = i;
            while (end < text.len and isWordChar(text[end])) : (end += 1) {}
            const word = text[i..end];
            if (isSecret(word)) {
                try out.appendSlice(redacted);
                i = end;
                continue;
            }
            if (cfg.emails and isEmail(word)) {
                try out.appendSlice("[EMAIL]");
                i = end;
                continue;
            }
        }
        if (std.mem.startsWith(u8, text[i..], "Bearer ")) {
            var end = i + 7;
            while (end < text.len and isWordChar(text[end])) : (end += 1) {}
            try out.appendSlice(redacted);
            i = end;
            continue;
        }
        try out.append(text[i]);
        i += 1;
    }
    var result: []const u8 = out.items;
    for (cfg.literals) |lit| {
        if (lit.len == 0) continue;
        result = try std.mem.replaceOwned(u8, a, result, lit, redacted);
    }
    return if (hook) |h| h(a, result) else result;
}

fn isSecret(word: []const u8) bool {
    for (secret_prefixes) |p| {
        if (std.mem.startsWith(u8, word, p) and word.len >= p.len + 8) return true;
    }
    return false;
}

fn isEmail(word: []const u8) bool {
    const at = std.mem.indexOfScalar(u8, word, '@') orelse return false;
    if (at == 0 or std.mem.indexOfScalarPos(u8, word, at + 1, '@') != null) return false;
    const domain = word[at + 1 ..];
    const dot = std.mem.lastIndexOfScalar(u8, domain, '.') orelse return false;
    return dot > 0 and dot + 1 < domain.len and std.mem.indexOfScalar(u8, word[0..at], '/') == null;
}
