"""Request parsing of the Triton simulator: the TensorRT-LLM ensemble's inputs and checks.

`stop_words` is a string or a list of strings (`""` means none), `return_log_probs` a bool;
both are ensemble inputs like the sampler fields, top-level or inside `parameters`.

The seed input is `seed` (UINT64) in the current ensemble (NVIDIA/TensorRT-LLM
triton_backend/all_models/inflight_batcher_llm/ensemble/config.pbtxt) and `random_seed` in
tensorrtllm_backend up to v0.19.0; the simulator declares one of them (`seed_input`). Triton
binds a generate-request key to the input of the same name and passes any other key on as a
request parameter the ensemble never reads (triton-inference-server/server src/http_server.cc,
`ExactMappingInput`), so the other name is ignored here too: the request runs unseeded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import falcon

# (name, KServe datatype, config data_type, optional) of the TensorRT-LLM ensemble's inputs.
INPUTS = [
    ("text_input", "BYTES", "TYPE_STRING", False),
    ("max_tokens", "INT32", "TYPE_INT32", False),
    ("bad_words", "BYTES", "TYPE_STRING", True),
    ("stop_words", "BYTES", "TYPE_STRING", True),
    ("end_id", "INT32", "TYPE_INT32", True),
    ("pad_id", "INT32", "TYPE_INT32", True),
    ("top_k", "INT32", "TYPE_INT32", True),
    ("top_p", "FP32", "TYPE_FP32", True),
    ("temperature", "FP32", "TYPE_FP32", True),
    ("repetition_penalty", "FP32", "TYPE_FP32", True),
    ("seed", "UINT64", "TYPE_UINT64", True),
    ("return_log_probs", "BOOL", "TYPE_BOOL", True),
    ("beam_width", "INT32", "TYPE_INT32", True),
    ("stream", "BOOL", "TYPE_BOOL", True),
]
OUTPUTS = [
    ("text_output", "BYTES", "TYPE_STRING"),
    ("cum_log_probs", "FP32", "TYPE_FP32"),
    ("output_log_probs", "FP32", "TYPE_FP32"),
]
SEED_INPUTS = ("seed", "random_seed")


def inputs(seed_input: str = "seed") -> list[tuple[str, str, str, bool]]:
    """The ensemble's declared inputs, with the seed under `seed_input`."""
    if seed_input not in SEED_INPUTS:
        raise ValueError(f"seed_input must be one of {SEED_INPUTS}, got {seed_input!r}")
    return [(seed_input if n == "seed" else n, d, t, o) for n, d, t, o in INPUTS]


class Rejected(Exception):
    """A refusal before inference: an error status and Triton's `{"error": message}`."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class TritonRequest:
    """The ensemble inputs one generate request sets."""

    prompt: str
    max_tokens: int
    seed: int | None
    stream: bool
    stop_words: list[str] = field(default_factory=list)
    log_probs: bool = False
    request_id: str | None = None  # the request's `id`, echoed in every response


def _field(fields: dict[str, Any], key: str, kind: str) -> Any:
    value = fields.get(key)
    if value is None:
        return None
    ok = {
        "uint": isinstance(value, int) and not isinstance(value, bool) and value >= 0,
        "unit": isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1,
        "pos": isinstance(value, int | float) and not isinstance(value, bool) and value >= 0,
        "bool": isinstance(value, bool),
    }[kind]
    if not ok:
        raise Rejected(falcon.HTTP_400, f"unable to parse input '{key}': got {value!r}")
    return value


def parse_request(model: str, body: Any, seed_input: str = "seed") -> TritonRequest:
    """Merge `parameters` and top-level fields and check the ensemble's inputs; the seed is
    read from `seed_input` only."""
    if not isinstance(body, dict):
        raise Rejected(falcon.HTTP_400, "failed to parse the request JSON buffer")
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise Rejected(falcon.HTTP_400, "'parameters' must be a JSON object")
    fields = {**params, **{k: v for k, v in body.items() if k != "parameters"}}
    missing = [n for n in ("text_input", "max_tokens") if fields.get(n) is None]
    if missing:
        names = {name for name, *_ in inputs(seed_input)}
        got = sorted(k for k in fields if k in names)
        raise Rejected(
            falcon.HTTP_400,
            f"[request id: <id_unknown>] expected 2 inputs but got {len(got)} inputs for model "
            f"'{model}'. Got input(s) {got}, but missing required input(s) {missing}. "
            "Please provide all required input(s).",
        )
    if not isinstance(fields["text_input"], str):
        raise Rejected(falcon.HTTP_400, "unable to parse input 'text_input': expected a string")
    max_tokens = _field(fields, "max_tokens", "uint")
    for key, kind in (("temperature", "pos"), ("top_k", "uint"), ("top_p", "unit")):
        _field(fields, key, kind)
    seed = _field(fields, seed_input, "uint")
    stream = _field(fields, "stream", "bool")
    log_probs = _field(fields, "return_log_probs", "bool")
    stop = fields.get("stop_words") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(w, str) for w in stop):
        raise Rejected(falcon.HTTP_400, f"unable to parse input 'stop_words': got {stop!r}")
    request_id = body.get("id")
    return TritonRequest(
        fields["text_input"],
        max_tokens,
        seed,
        bool(stream),
        stop,
        bool(log_probs),
        request_id if isinstance(request_id, str) else None,
    )


def model_metadata(model: str, declared: list[tuple[str, str, str, bool]], text_mode: str) -> Any:
    """`GET /v2/models/{m}`: name, versions, platform, inputs and outputs."""
    return {
        "name": model,
        "versions": ["1"],
        "platform": "python" if text_mode == "accumulate" else "ensemble",
        "inputs": [{"name": n, "datatype": d, "shape": [-1, 1]} for n, d, _, _ in declared],
        "outputs": [{"name": n, "datatype": d, "shape": [-1, -1]} for n, d, _ in OUTPUTS],
    }


def model_config(
    model: str,
    declared: list[tuple[str, str, str, bool]],
    *,
    slots: int,
    trtllm_version: str | None,
    decoupled: bool,
    text_mode: str,
) -> dict[str, Any]:
    """`GET /v2/models/{m}/config`: the stock ensemble, or the BLS model when it accumulates
    tokens (`accumulate_tokens` among its parameters)."""
    params: dict[str, Any] = {}
    if trtllm_version is not None:
        params["trtllm_version"] = {"string_value": trtllm_version}
    config: dict[str, Any] = {
        "name": model,
        "platform": "ensemble",
        "backend": "",
        "version_policy": {"latest": {"num_versions": 1}},
        "max_batch_size": slots,
        "input": [
            {"name": n, "data_type": t, "dims": [-1], "optional": o} for n, _, t, o in declared
        ],
        "output": [{"name": n, "data_type": t, "dims": [-1]} for n, _, t in OUTPUTS],
        "parameters": params,
        # Triton marks an ensemble decoupled when one of its steps is
        "model_transaction_policy": {"decoupled": decoupled},
    }
    if text_mode == "accumulate":
        params["accumulate_tokens"] = {"string_value": "true"}
        params["tensorrt_llm_model_name"] = {"string_value": "tensorrt_llm"}
        config.update(platform="", backend="python")
    else:
        steps = ("preprocessing", "tensorrt_llm", "postprocessing")
        config["ensemble_scheduling"] = {
            "step": [{"model_name": s, "model_version": -1} for s in steps]
        }
    return config
