"""Deterministic token stream of the test engines: a pure function of (prompt, seed, index).

A replica `salt` only matters from a directive's `diverge_at` index on, which is how a replica
is made to diverge on purpose for negative determinism tests.

Log-probabilities (`step`) are a pure function of the same inputs. The chosen token is always
the most likely one (the engines behave greedily), and the probabilities of a position sum to
at most 1. At a directive's `diverge_at` index every replica sees a near tie: the runner-up
trails the chosen token by `SPLIT_MARGIN`, and on a salted replica the runner-up is the token
an unsalted replica chose there, so a determinism report can show how small the margin was.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

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


def variant_key(prompt: str, variant: str = "") -> str:
    """The prompt material tokens derive from: the prompt, and a `variant` when sampler
    settings that change the output are active (e.g. llama.cpp's repetition penalties)."""
    return f"{prompt}\x00{variant}" if variant else prompt


def iter_tokens(
    prompt: str, seed: int, count: int, *, salt: str = "", diverge_at: int | None = None
) -> Iterator[tuple[int, str]]:
    """The first `count` (id, text) pairs; `salt` applies from `diverge_at` on (never if None)."""
    for i in range(count):
        s = salt if diverge_at is not None and i >= diverge_at else ""
        tid = token_id(prompt, seed, i, s)
        yield tid, token_text(tid)


SPLIT_MARGIN = 0.02  # logprob gap between the two best tokens at a `diverge_at` index


@dataclass(frozen=True, slots=True)
class Step:
    """One generated position: the chosen token, its logprob, and the `top_n` most likely
    tokens as (id, logprob), most likely first (the chosen token leads)."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


def _unit(material: bytes, tag: str) -> float:
    digest = hashlib.blake2b(material + tag.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def step(
    prompt: str,
    seed: int,
    index: int,
    *,
    salt: str = "",
    diverge_at: int | None = None,
    top_n: int = 0,
) -> Step:
    """The token at `index` (the same id as `iter_tokens`) with its log-probabilities.

    `diverge_at` is the directive's value on every replica (it shapes the margin there); the
    salt changes tokens only from that index on, as in `iter_tokens`.
    """
    split = diverge_at is not None and index == diverge_at
    used_salt = salt if diverge_at is not None and index >= diverge_at else ""
    chosen = token_id(prompt, seed, index, used_salt)
    # At the split the distribution is the unsalted one: replicas disagree only on the winner.
    material = f"{seed}\x00{index}\x00{'' if split else used_salt}\x00{prompt}".encode()
    if split:
        p0 = 0.45 + 0.04 * _unit(material, "p0")
        probs = [p0, p0 * math.exp(-SPLIT_MARGIN)]
    else:
        probs = [0.5 + 0.49 * _unit(material, "p0")]
    if top_n <= 1:
        return Step(chosen, math.log(probs[0]), ((chosen, math.log(probs[0])),) if top_n else ())
    ratio = 0.3 + 0.4 * _unit(material, "ratio")
    rest = 1.0 - sum(probs)
    while len(probs) < top_n:
        probs.append(rest * (1 - ratio) * ratio ** (len(probs) - (2 if split else 1)))
    ids = [chosen]
    unsalted = token_id(prompt, seed, index) if split and used_salt else chosen
    if unsalted != chosen:
        ids.append(unsalted)  # the runner-up here is what the unsalted replicas chose
    ids += _alternatives(material, top_n - len(ids), set(ids))
    top = tuple((tid, math.log(p)) for tid, p in zip(ids, probs, strict=False))
    return Step(chosen, top[0][1], top)


def _alternatives(material: bytes, n: int, taken: set[int]) -> list[int]:
    """`n` further token ids, distinct, with distinct texts while the word list lasts."""
    out: list[int] = []
    words = {t % len(_WORDS) for t in taken}
    j = 0
    while len(out) < n and len(taken) < VOCAB_SIZE:
        cand = int.from_bytes(hashlib.blake2b(material + b"alt%d" % j, digest_size=8).digest())
        cand %= VOCAB_SIZE
        j += 1
        if cand in taken or (cand % len(_WORDS) in words and len(words) < len(_WORDS)):
            continue
        taken.add(cand)
        words.add(cand % len(_WORDS))
        out.append(cand)
    return out
