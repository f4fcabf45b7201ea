"""Deterministic token stream of the test engines: a pure function of (prompt, seed, index).

A replica `salt` only matters from a directive's `diverge_at` index on, which is how a replica
is made to diverge on purpose for negative determinism tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

VOCAB_SIZE = 32_000
_WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu "
    "über café naïve 東京 数据 ☕ 🚀"
).split()


def token_id(prompt: str, seed: int, index: int, salt: str = "") -> int:
    """Token id at `index`; identical on every replica unless `salt` differs."""
    material = f"{seed}\x00{index}\x00{salt}\x00{prompt}".encode()
    return int.from_bytes(hashlib.blake2b(material, digest_size=8).digest(), "big") % VOCAB_SIZE


def token_text(tid: int) -> str:
    """Text piece of a token id: a word with a leading space, sometimes multibyte UTF-8."""
    return " " + _WORDS[tid % len(_WORDS)]


def iter_tokens(
    prompt: str, seed: int, count: int, *, salt: str = "", diverge_at: int | None = None
) -> Iterator[tuple[int, str]]:
    """The first `count` (id, text) pairs; `salt` applies from `diverge_at` on (never if None)."""
    for i in range(count):
        s = salt if diverge_at is not None and i >= diverge_at else ""
        tid = token_id(prompt, seed, i, s)
        yield tid, token_text(tid)
