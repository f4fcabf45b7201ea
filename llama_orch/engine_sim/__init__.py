"""The controllable test engine: directive grammar, deterministic tokens, protocol servers.

The directive grammar and the token function are shared with the reference orchestrator's
in-process mock adapter, so a directive means the same thing everywhere (specs/80).
"""
