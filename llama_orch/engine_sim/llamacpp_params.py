"""llama-server's sampling parameters and the documents that report them, as build b1-0c1e570
writes them (llama-cpp-python 0.3.36's vendored llama.cpp, the build this project compiles).

`tests/test_sim_vs_real_llamacpp.py` compares these shapes with the real server's; keep them
in its key order and JSON types. Three views of one parameter set:

- `slot_params`: `/props` `default_generation_settings.params` and `/slots` `params`;
- `generation_settings`: the final `/completion` event's `generation_settings` (a few more
  fields: stop words, logit bias, grammar, DRY sequence breakers);
- `REQUEST_DEFAULTS`: what a request gets for each field it leaves out, among the fields the
  simulator reads. `cache_prompt` and `return_tokens` are request-only: no report shows them.

Samplers: llama.cpp applies only the samplers named in `samplers`, the repetition penalties
included (ggml-org/llama.cpp common/sampling.cpp, `common_sampler_init`: the penalties sampler
is added for `COMMON_SAMPLER_TYPE_PENALTIES` only). The default order starts with "penalties".
"""

from __future__ import annotations

from typing import Any

DEFAULT_SAMPLERS = [
    "penalties",
    "dry",
    "top_n_sigma",
    "top_k",
    "typ_p",
    "top_p",
    "min_p",
    "xtc",
    "temperature",
]

REQUEST_DEFAULTS: dict[str, Any] = {
    "n_predict": -1,
    "seed": 4294967295,
    "temperature": 0.8,
    "top_k": 40,
    "top_p": 0.95,
    "min_p": 0.05,
    "repeat_last_n": 64,
    "repeat_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "stream": False,
    "cache_prompt": True,
    "return_tokens": False,
    "n_probs": 0,
    "samplers": DEFAULT_SAMPLERS,
    "stop": [],
}
INTS = ("n_predict", "seed", "top_k", "n_probs", "id_slot", "repeat_last_n")
FLOATS = (
    "temperature",
    "top_p",
    "min_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
)
BOOLS = ("stream", "cache_prompt", "return_tokens")


def penalty_active(params: dict[str, Any]) -> bool:
    """Whether the repetition penalties change anything: "penalties" is in the chain and
    one of them is not neutral."""
    samplers = params.get("samplers")
    if not isinstance(samplers, list) or "penalties" not in samplers:
        return False
    return (
        params.get("repeat_penalty", 1.0) != 1.0
        or params.get("presence_penalty", 0.0) != 0.0
        or params.get("frequency_penalty", 0.0) != 0.0
    )


def penalty_variant(params: dict[str, Any]) -> str:
    """The token variant of active penalties ("" when they change nothing)."""
    if not penalty_active(params):
        return ""
    keys = ("repeat_penalty", "presence_penalty", "frequency_penalty")
    return "penalties=" + "/".join(str(float(params.get(k, 0.0))) for k in keys)


def _f(value: Any) -> float:
    return float(value)


def slot_params(p: dict[str, Any]) -> dict[str, Any]:
    """A slot's parameters, as `/props` and `/slots` report them."""
    return {
        "seed": int(p["seed"]),
        "temperature": _f(p["temperature"]),
        "dynatemp_range": 0.0,
        "dynatemp_exponent": 1.0,
        "top_k": int(p["top_k"]),
        "top_p": _f(p["top_p"]),
        "min_p": _f(p["min_p"]),
        "top_n_sigma": -1.0,
        "xtc_probability": 0.0,
        "xtc_threshold": 0.1,
        "typical_p": 1.0,
        "repeat_last_n": int(p["repeat_last_n"]),
        "repeat_penalty": _f(p["repeat_penalty"]),
        "presence_penalty": _f(p["presence_penalty"]),
        "frequency_penalty": _f(p["frequency_penalty"]),
        "dry_multiplier": 0.0,
        "dry_base": 1.75,
        "dry_allowed_length": 2,
        "dry_penalty_last_n": 64,
        "mirostat": 0,
        "mirostat_tau": 5.0,
        "mirostat_eta": 0.1,
        "adaptive_target": -1.0,
        "adaptive_decay": 0.9,
        "max_tokens": int(p["n_predict"]),
        "n_predict": int(p["n_predict"]),
        "n_keep": 0,
        "n_discard": 0,
        "ignore_eos": False,
        "stream": bool(p["stream"]),
        "n_probs": int(p["n_probs"]),
        "min_keep": 0,
        "chat_format": "Content-only",
        "reasoning_format": "none",
        "reasoning_in_content": False,
        "generation_prompt": "",
        "samplers": list(p["samplers"]),
        "speculative.types": "none",
        "timings_per_token": False,
        "post_sampling_probs": False,
        "backend_sampling": False,
        "lora": [],
    }


def generation_settings(p: dict[str, Any]) -> dict[str, Any]:
    """The final event's `generation_settings`: the slot parameters and a few more."""
    base = slot_params(p)
    out: dict[str, Any] = {}
    for key, value in base.items():
        if key == "max_tokens":
            out["stop"] = list(p["stop"])
        out[key] = value
        if key == "dry_penalty_last_n":
            out["dry_sequence_breakers"] = ["\n", ":", '"', "*"]
        elif key == "stream":
            out["logit_bias"] = []
        elif key == "min_keep":
            out.update(grammar="", grammar_lazy=False, grammar_triggers=[], preserved_tokens=[])
    out["reasoning_format"] = "deepseek"
    return out


def props(
    *, slots: int, ctx: int, model: str, build_info: str, defaults: dict[str, Any]
) -> dict[str, Any]:
    """`GET /props` of a text-only model without a chat template of its own."""
    path = f"/models/{model}.gguf"
    return {
        "default_generation_settings": {"params": slot_params(defaults), "n_ctx": ctx},
        "total_slots": slots,
        "model_alias": path,
        "model_ftype": "Q4_K - Medium",
        "model_path": path,
        "modalities": {"vision": False, "video": False, "audio": False},
        "media_marker": "<__media__>",
        "endpoint_slots": True,
        "endpoint_props": False,
        "endpoint_metrics": True,
        "ui": True,
        "ui_settings": {},
        "chat_template": "",
        "chat_template_caps": {
            name: False
            for name in (
                "supports_object_arguments",
                "supports_parallel_tool_calls",
                "supports_preserve_reasoning",
                "supports_reasoning_effort",
                "supports_string_content",
                "supports_system_role",
                "supports_tool_calls",
                "supports_tools",
                "supports_typed_content",
            )
        },
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "build_info": build_info,
        "is_sleeping": False,
        "cors_proxy_enabled": False,
    }


def slot(slot_id: int, ctx: int, processing: bool, task: dict[str, Any] | None) -> dict[str, Any]:
    """One `/slots` entry: a slot that never ran a task shows four fields; one that did keeps
    its last task's id, prompt counts, parameters and decoding state."""
    entry: dict[str, Any] = {
        "id": slot_id,
        "n_ctx": ctx,
        "speculative": False,
        "is_processing": processing,
    }
    if task is not None:
        entry.update(
            id_task=task["id_task"],
            n_prompt_tokens=task["n_prompt_tokens"],
            n_prompt_tokens_processed=task["n_prompt_tokens"],
            n_prompt_tokens_cache=0,
            params=slot_params(task["params"]),
            next_token=[
                {
                    "has_next_token": processing,
                    "has_new_line": False,
                    "n_remain": -1,
                    "n_decoded": task.get("n_decoded", 0),
                }
            ],
        )
    return entry
