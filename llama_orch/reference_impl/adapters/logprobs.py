"""Log-probabilities in each engine's wire form, read into `TokenEvent.logprob` and `.top`.

`top` is always the engine's most likely tokens at the position, most likely first, at most
the `top_logprobs` the request asked for; it includes the chosen token when that one is among
them. Forms (the llama.cpp one as measured on llama-server b1-0c1e570):

- llama.cpp `/completion` with `n_probs: N`: each event has `completion_probabilities`, one
  entry per token of the event: `{id, token, bytes, logprob, top_logprobs: [{id, token, bytes,
  logprob}]}`, log-probabilities of the model's distribution before sampling (N entries, the
  chosen token included when it ranks). With `post_sampling_probs: true` the same entries carry
  `prob` and `top_probs` (probabilities after the sampler chain) instead; both are read.
  `token` of the chosen entry is the text the event sends for it ("" while a stop word may
  start), the alternatives carry their full text.
- llama-server `/v1/completions` with `logprobs: N`: `choices[0].logprobs.content` holds the
  same entries as above (no `token_ids` field, so the ids come from here).
- vLLM `/v1/completions` with `logprobs: N`: `{tokens, token_logprobs, top_logprobs,
  text_offset}`, one list element per token; each `top_logprobs` element maps token text (or
  `token_id:<id>` with `return_tokens_as_token_ids`) to a logprob and holds the sampled token
  plus the N most likely (equal texts collapse into one key).
- TGI: every `token` has `logprob`; `top_n_tokens: N` adds `top_tokens: [{id, text, logprob,
  special}]` per event.
- TensorRT-LLM (Triton): `return_log_probs: true` fills `output_log_probs` (the chosen tokens'
  logprobs); the ensemble returns no alternatives, so `top` stays empty.
"""

from __future__ import annotations

import math
from typing import Any

from llama_orch.reference_impl.adapters.base import TokenAlt

TokenLogprob = tuple[int | None, float | None, tuple[TokenAlt, ...]]  # (id, logprob, top)
_ID_PREFIX = "token_id:"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _log(prob: Any) -> float | None:
    p = _number(prob)
    if p is None or p < 0:
        return None
    return math.log(p) if p > 0 else -math.inf


def _ranked(alts: list[TokenAlt], limit: int) -> tuple[TokenAlt, ...]:
    alts.sort(key=lambda a: a.logprob, reverse=True)
    return tuple(alts[:limit] if limit > 0 else alts)


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def llama_entry(entry: Any, limit: int = 0) -> TokenLogprob:
    """(id, logprob, top) of one llama.cpp probabilities entry (either form)."""
    if not isinstance(entry, dict):
        return None, None, ()
    post = "logprob" not in entry and "prob" in entry
    logprob = _log(entry.get("prob")) if post else _number(entry.get("logprob"))
    alts: list[TokenAlt] = []
    for alt in entry.get("top_probs" if post else "top_logprobs") or ():
        if not isinstance(alt, dict):
            continue
        value = _log(alt.get("prob")) if post else _number(alt.get("logprob"))
        if value is not None:
            alts.append(TokenAlt(_int(alt.get("id")), str(alt.get("token") or ""), value))
    return _int(entry.get("id")), logprob, _ranked(alts, limit)


def _split_key(key: str) -> tuple[int | None, str]:
    """A vLLM token key: `token_id:<id>` gives the id (text unknown), else the text."""
    if key.startswith(_ID_PREFIX) and key[len(_ID_PREFIX) :].isdigit():
        return int(key[len(_ID_PREFIX) :]), ""
    return None, key


def openai_logprobs(logprobs: Any, limit: int = 0) -> list[TokenLogprob]:
    """Per token of a completions chunk: vLLM's legacy object or llama-server's `content`."""
    if not isinstance(logprobs, dict):
        return []
    content = logprobs.get("content")
    if isinstance(content, list):
        return [llama_entry(entry, limit) for entry in content]
    tokens = logprobs.get("tokens") or []
    values = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or []
    out: list[TokenLogprob] = []
    for i, token in enumerate(tokens):
        tid = _split_key(token)[0] if isinstance(token, str) else None
        value = _number(values[i]) if i < len(values) else None
        alts: list[TokenAlt] = []
        top = tops[i] if i < len(tops) else None
        for key, lp in (top or {}).items() if isinstance(top, dict) else ():
            number = _number(lp)
            if number is not None:
                alt_id, text = _split_key(str(key))
                alts.append(TokenAlt(alt_id, text, number))
        out.append((tid, value, _ranked(alts, limit)))
    return out


def tgi_top(top_tokens: Any, limit: int = 0) -> tuple[TokenAlt, ...]:
    """TGI's `top_tokens` of one event."""
    alts = [
        TokenAlt(_int(t.get("id")), str(t.get("text") or ""), value)
        for t in top_tokens or ()
        if isinstance(t, dict) and (value := _number(t.get("logprob"))) is not None
    ]
    return _ranked(alts, limit)


def last_number(values: Any) -> float | None:
    """The last value of a per-token list (Triton's `output_log_probs`), or a lone number."""
    if isinstance(values, list):
        return _number(values[-1]) if values else None
    return _number(values)
