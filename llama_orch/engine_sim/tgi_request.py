"""Request validation of the TGI simulator: TGI's router checks and their 422 answers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import falcon

from llama_orch.engine_sim.engine import SimEngine
from llama_orch.engine_sim.stops import tgi_stopped

MAX_STOP_SEQUENCES = 4  # TGI launcher defaults (`--max-stop-sequences`, `--max-top-n-tokens`)
MAX_TOP_N_TOKENS = 5


class Rejected(Exception):
    """A request TGI refuses before generating: HTTP status plus its JSON error body."""

    def __init__(self, status: str, body: dict[str, str]) -> None:
        super().__init__(body["error"])
        self.status = status
        self.body = body


def invalid(message: str) -> Rejected:
    """TGI's validation refusal: 422 with `error_type: "validation"`."""
    return Rejected(
        falcon.HTTP_422, {"error": f"Input validation error: {message}", "error_type": "validation"}
    )


@dataclass
class TgiRequest:
    """A validated generation request, with TGI's parameter defaults applied."""

    prompt: str
    max_new_tokens: int | None
    seed: int | None
    sampling: bool
    details: bool
    input_length: int
    stop: list[str] = field(default_factory=list)
    top_n: int = 0

    def finish(self, texts: list[str]) -> str | None:
        """TGI's stopping criteria after a token: the token limit first, then a stop
        sequence at the end of the output (kept in it); None: go on."""
        if self.max_new_tokens is not None and len(texts) >= self.max_new_tokens:
            return "length"
        if self.stop and tgi_stopped("".join(texts), self.stop):
            return "stop_sequence"
        return None


def _number(params: dict[str, Any], key: str, *, integer: bool = False) -> float | int | None:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
        kind = "an integer" if integer else "a number"
        raise invalid(f"`{key}` must be {kind}")
    return value


# TGI's parameter checks: (key, integer, valid, message); a failure is a 422 validation error.
_CHECKS: tuple[tuple[str, bool, Callable[[float], bool], str], ...] = (
    ("temperature", False, lambda v: v > 0, "`temperature` must be strictly positive"),
    ("top_k", True, lambda v: v > 0, "`top_k` must be strictly positive"),
    ("top_p", False, lambda v: 0 < v < 1, "`top_p` must be > 0.0 and < 1.0"),
    (
        "repetition_penalty",
        False,
        lambda v: v > 0,
        "`repetition_penalty` must be strictly positive",
    ),
    ("max_new_tokens", True, lambda v: v > 0, "`max_new_tokens` must be strictly positive"),
    ("seed", True, lambda v: v >= 0, "`seed` must be a non-negative integer"),
)


def parse_request(engine: SimEngine, body: Any) -> TgiRequest:
    """Validate a generation body the way TGI's router does (raises Rejected)."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), str):
        raise invalid("`inputs` must be a string")
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise invalid("`parameters` must be an object")
    prompt: str = body["inputs"]
    if not prompt:
        raise invalid("`inputs` cannot be empty")
    values = {}
    for key, integer, valid, message in _CHECKS:
        value = _number(params, key, integer=integer)
        if value is not None and not valid(value):
            raise invalid(message)
        values[key] = value
    max_new, seed = values["max_new_tokens"], values["seed"]
    input_length = max(1, len(engine.tokenize(prompt)))
    max_total = engine.config.ctx
    if input_length >= max_total:
        raise invalid(f"`inputs` must have less than {max_total} tokens. Given: {input_length}")
    if max_new is not None and input_length + max_new > max_total:
        raise invalid(
            f"`inputs` tokens + `max_new_tokens` must be <= {max_total}. "
            f"Given: {input_length} `inputs` tokens and {max_new} `max_new_tokens`"
        )
    stop = params.get("stop") or []
    if not isinstance(stop, list) or not all(isinstance(x, str) for x in stop):
        raise invalid("`stop` must be a list of strings")
    if len(stop) > MAX_STOP_SEQUENCES:
        raise invalid(
            f"`stop` supports up to {MAX_STOP_SEQUENCES} stop sequences. Given: {len(stop)}"
        )
    top_n = _number(params, "top_n_tokens", integer=True) or 0
    if not 0 <= top_n <= MAX_TOP_N_TOKENS:
        raise invalid(f"`top_n_tokens` must be >= 0 and <= {MAX_TOP_N_TOKENS}. Given: {top_n}")
    sampling = bool(params.get("do_sample")) or any(
        values[k] is not None for k in ("temperature", "top_k", "top_p")
    )
    return TgiRequest(
        prompt=prompt,
        max_new_tokens=int(max_new) if max_new is not None else None,
        seed=int(seed) if seed is not None else None,
        sampling=sampling,
        details=bool(params.get("details")),
        input_length=input_length,
        stop=stop,
        top_n=int(top_n),
    )
