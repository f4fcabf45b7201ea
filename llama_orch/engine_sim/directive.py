"""Parser for the `[[sim key=value ...]]` prompt prefix that steers the test engines.

One grammar for the in-process mock adapter and the engine simulator; the normative text is
specs/80-compliance-harness.md, section 6 (OC-HARNESS-8401..8405). A directive is recognised
only at the very start of the prompt; anything else is plain text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MODE_RE = re.compile(r"^\[\[sim(?: |\]|$)")
_DIRECTIVE_RE = re.compile(r"^\[\[sim(?P<body>(?: +[^ \]]+)*) *\]\]")
_PAIR_RE = re.compile(r"^([a-z_]+)=(.*)$")
_UINT_RE = re.compile(r"^[0-9]+$")
INT_MAX = 2_147_483_647
COUNT_KEYS = ("tokens", "itl_ms", "ttft_ms", "hold_ms", "fail_after", "diverge_at")
BOOL_KEYS = ("interruptible",)
OOM_KINDS = ("device", "host")
KEYS = (*COUNT_KEYS, "overload", *BOOL_KEYS, "oom")


class DirectiveError(ValueError):
    """The prompt is in directive mode but the directive is malformed; names the problem."""


@dataclass(frozen=True)
class Directive:
    """Behaviour a test engine adopts for one request; defaults are a plain fast answer.

    `tokens=None` means the request's own token limit (else 16). `overload` is True (always),
    False (never) or N (the first N requests with this exact prompt on one engine instance).
    `interruptible=False`: the engine cannot save this decode for a later resume (hard
    preemption is refused for it). `oom`: the generation fails by running out of `device`
    (GPU) or `host` memory, after `fail_after` tokens (0 when not given).
    """

    tokens: int | None = None
    itl_ms: int = 0
    ttft_ms: int = 0
    hold_ms: int = 0
    fail_after: int | None = None
    overload: bool | int = False
    diverge_at: int | None = None
    interruptible: bool = True
    oom: str | None = None

    def failure_at(self) -> int | None:
        """Token index at which the generation fails (fail_after, or 0 for an oom)."""
        if self.fail_after is not None:
            return self.fail_after
        return 0 if self.oom is not None else None

    def token_count(self, request_limit: int | None) -> int:
        """Tokens to generate: the directive's count capped by the request's own limit."""
        wanted = self.tokens if self.tokens is not None else (request_limit or 16)
        return min(wanted, request_limit) if request_limit is not None else wanted


def parse_directive(prompt: str) -> tuple[Directive | None, str]:
    """Split a prompt into its directive (or None) and the remaining ordinary prompt.

    Raises DirectiveError when the prompt is in directive mode (`[[sim` followed by a space,
    `]` or the end) but does not follow the grammar.
    """
    if not _MODE_RE.match(prompt):
        return None, prompt
    match = _DIRECTIVE_RE.match(prompt)
    if match is None:
        raise DirectiveError(
            "malformed or unterminated directive: expected `[[sim key=value ...]]` "
            "with keys separated by spaces"
        )
    values: dict[str, int | bool | str] = {}
    for item in filter(None, match.group("body").split(" ")):
        pair = _PAIR_RE.match(item)
        if pair is None:
            raise DirectiveError(f"directive item {item!r} is not key=value")
        key, raw = pair.groups()
        if key in values:
            raise DirectiveError(f"directive key {key!r} given twice")
        values[key] = _convert(key, raw)
    rest = prompt[match.end() :]
    return Directive(**values), rest[1:] if rest.startswith(" ") else rest  # type: ignore[arg-type]


def _convert(key: str, raw: str) -> int | bool | str:
    if key not in KEYS:
        raise DirectiveError(f"unknown directive key {key!r} (known: {', '.join(KEYS)})")
    if key in BOOL_KEYS:
        if raw not in ("true", "false"):
            raise DirectiveError(f"directive key {key!r} expects true or false, got {raw!r}")
        return raw == "true"
    if key == "oom":
        if raw not in OOM_KINDS:
            raise DirectiveError(f"directive key 'oom' expects device or host, got {raw!r}")
        return raw
    if key == "overload" and raw in ("true", "false"):
        return raw == "true"
    if not _UINT_RE.match(raw):
        expected = "true, false or an integer" if key == "overload" else "a non-negative integer"
        raise DirectiveError(f"directive key {key!r} expects {expected}, got {raw!r}")
    value = int(raw)
    if value > INT_MAX:
        raise DirectiveError(f"directive key {key!r} is out of range ({value} > {INT_MAX})")
    return value
