"""What a Triton deployment declares, read once before the first request (specs/43, section 3).

Every fact here decides the wire form of the requests, and each one differs between
deployments or TensorRT-LLM versions, so the adapter reads it from the server instead of
assuming it:

- the seed input: the TensorRT-LLM ensemble names it `seed` (UINT64); tensorrtllm_backend up
  to v0.19.0 named it `random_seed`. Triton's generate extension binds a top-level request key
  to the model input of that name and turns any other key into a request parameter that the
  model never reads, so the wrong name silently loses per-request seeding. The adapter uses the
  name that `GET /v2/models/{m}` lists in `inputs`; a model declaring neither cannot serve a
  seeded task and is a permanent fault naming the model;
- decoupled mode: TensorRT-LLM refuses `stream: true` unless the model is decoupled
  (`model_transaction_policy.decoupled` in `GET /v2/models/{m}/config`; an ensemble is
  decoupled when one of its steps is). Streaming is the adapter protocol's only path, so a
  model that is not decoupled is a permanent fault naming the model;
- how streamed text is detokenized: the stock ensemble's postprocessing model decodes the
  tokens of each streamed response on its own, so a tokenizer that marks word starts inside
  the piece (SentencePiece `▁word`) loses the leading space of every piece; the BLS model with
  `accumulate_tokens: "true"` decodes all tokens so far and sends the whole text each time.
  The adapter turns cumulative text into pieces (`cumulative_text`) and warns once about
  per-piece text (`per_piece_text`), which it cannot repair;
- the TensorRT-LLM version, from the configuration's `parameters` (OC-ADAPT-5070).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .base import CompletionRequest

# the current name first; `random_seed` is tensorrtllm_backend <= v0.19.0
SEED_INPUTS = ("seed", "random_seed")
TRTLLM_VERSION_KEYS = ("trtllm_version", "tensorrt_llm_version")
UNKNOWN = "unknown"
TRITON_METRICS_PORT = 8002  # tritonserver --metrics-port default
_TRUE = frozenset({"true", "1", "t", "y", "yes"})


class DeploymentError(ValueError):
    """The model cannot serve this orchestrator's requests; the message names the model."""


@dataclass(frozen=True)
class TritonDeployment:
    """The facts of one served model that shape the adapter's requests."""

    model: str
    seed_input: str
    decoupled: bool
    cumulative_text: bool
    trtllm_version: str | None
    max_batch_size: int

    @property
    def per_piece_text(self) -> bool:
        """Each streamed response is detokenized on its own (the stock ensemble)."""
        return not self.cumulative_text


def _param(config: dict[str, Any], key: str) -> str | None:
    value = (config.get("parameters") or {}).get(key)
    if isinstance(value, dict):
        value = value.get("string_value")
    return str(value) if value not in (None, "") else None


def trtllm_version_of(config: dict[str, Any]) -> str | None:
    """TensorRT-LLM version from a model configuration; None for other backends."""
    for key in TRTLLM_VERSION_KEYS:
        value = _param(config, key)
        if value:
            return value
    backend = f"{config.get('backend', '')} {config.get('platform', '')}".lower()
    steps = (config.get("ensemble_scheduling") or {}).get("step") or []
    names = [str(s.get("model_name")) for s in steps if isinstance(s, dict)]
    if "tensorrtllm" in backend or any("tensorrt_llm" in n for n in names):
        return UNKNOWN
    if _param(config, "tensorrt_llm_model_name"):  # the BLS model calls a TensorRT-LLM model
        return UNKNOWN
    return None


def deployment_of(model: str, metadata: Any, config: Any) -> TritonDeployment:
    """Read the deployment facts; DeploymentError when the model cannot serve seeded streams."""
    metadata = metadata if isinstance(metadata, dict) else {}
    config = config if isinstance(config, dict) else {}
    inputs = {str(i.get("name")) for i in metadata.get("inputs") or () if isinstance(i, dict)}
    seed_input = next((name for name in SEED_INPUTS if name in inputs), None)
    if seed_input is None:
        raise DeploymentError(
            f"triton model {model!r} declares no seed input (neither 'seed' nor "
            f"'random_seed' among its inputs {sorted(inputs)}): per-request seeds would be "
            "ignored, so its pool cannot serve deterministic tasks"
        )
    policy = config.get("model_transaction_policy") or {}
    decoupled = bool(policy.get("decoupled")) if isinstance(policy, dict) else False
    if not decoupled:
        raise DeploymentError(
            f"triton model {model!r} is not decoupled (model_transaction_policy.decoupled is "
            "false): TensorRT-LLM refuses stream: true for it; deploy it in decoupled mode"
        )
    accumulate = (_param(config, "accumulate_tokens") or "").lower() in _TRUE
    return TritonDeployment(
        model=model,
        seed_input=seed_input,
        decoupled=decoupled,
        cumulative_text=accumulate,
        trtllm_version=trtllm_version_of(config),
        max_batch_size=int(config.get("max_batch_size") or 1),
    )


def triton_inputs(req: CompletionRequest, seed_input: str = "seed") -> dict[str, Any]:
    """The generate request body for a task (the mapping of `adapters.triton`)."""
    s = req.sampler
    body: dict[str, Any] = {
        "text_input": req.prompt,
        "max_tokens": req.max_tokens,
        seed_input: req.seed,
        "stream": True,
    }
    if req.stop:
        body["stop_words"] = list(req.stop)
    if req.top_logprobs > 0:
        body["return_log_probs"] = True
    if s.temperature <= 0:
        body["top_k"] = 1
        return body
    body["temperature"] = s.temperature
    body["top_k"] = max(0, s.top_k)
    body["top_p"] = s.top_p
    if s.repeat_penalty is not None:
        body["repetition_penalty"] = s.repeat_penalty
    return body


def default_metrics_url(base_url: str) -> str:
    """Triton's metrics URL next to an inference URL: same host, port 8002, `/metrics`."""
    parts = urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme or "http", f"{host}:{TRITON_METRICS_PORT}", "/metrics", "", ""))


class CumulativeText:
    """Pieces from responses that each carry the whole text so far (BLS `accumulate_tokens`).

    A trailing U+FFFD (a character whose bytes are not all generated yet) is held until a
    later response completes it; what the final response still holds is released by `rest()`.
    """

    __slots__ = ("last", "sent")

    def __init__(self) -> None:
        self.sent = ""
        self.last = ""

    def piece(self, text: str) -> str:
        """The new text of one response ("" while nothing new is stable)."""
        self.last = text
        stable = text.rstrip("\ufffd")
        # Sent text cannot be taken back: when the decoder rewrote earlier text, only what
        # lies beyond the length already sent goes out.
        out = stable[len(self.sent) :]
        self.sent += out
        return out

    def rest(self) -> str:
        """Held text at the end of the stream."""
        out = self.last[len(self.sent) :]
        self.sent += out
        return out
