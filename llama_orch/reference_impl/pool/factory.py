"""Which adapter backs a replica: the in-process mock, or an HTTP client of a real engine.

- `adapter: mock` -> MockAdapter (no engine, no GPU);
- a pool with `endpoint` -> the engine family's adapter pointed at that server, scraping
  metrics from `metrics_endpoint` when the pool names one (Triton's metrics port; without it
  the Triton adapter uses port 8002 of the endpoint's host, Triton's default);
- a pool with `launch` (llama.cpp only) -> LlamaCppAdapter pointed at the llama-server the
  pool manager started, whose address arrives as `base_url`.

Engine adapters are imported on first use, so a build without one of them still serves the
others; a missing one raises LookupError, which keeps that pool unready with the cause.
"""

from __future__ import annotations

import importlib
from typing import Any

from llama_orch.reference_impl.config import PoolConfig, PreemptionMode
from llama_orch.reference_impl.constants import DEFAULT_CTX
from llama_orch.reference_impl.pool.determinism import DeterminismSettings, determinism_settings
from llama_orch.reference_impl.pool.launch import slot_dir

UNLOADABLE_PREFIX = "repo:mock/unloadable"
_UNSET: Any = object()

# engine -> (module, class) of its adapter
ENGINE_ADAPTERS: dict[str, tuple[str, str]] = {
    "llamacpp": ("llama_orch.reference_impl.adapters.llamacpp", "LlamaCppAdapter"),
    "vllm": ("llama_orch.reference_impl.adapters.vllm", "VllmAdapter"),
    "tgi": ("llama_orch.reference_impl.adapters.tgi", "TgiAdapter"),
    "triton": ("llama_orch.reference_impl.adapters.triton", "TritonAdapter"),
}


def adapter_class(engine: str) -> type:
    """The adapter class of an engine family; LookupError when this build lacks it."""
    try:
        module_name, class_name = ENGINE_ADAPTERS[engine]
    except KeyError:
        raise LookupError(f"no adapter for engine {engine!r}") from None
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise LookupError(f"the {engine} adapter is not available in this build ({exc})") from None


def make_adapter(
    pool: PoolConfig,
    replica_id: str,
    model_ref: str,
    *,
    base_url: str | None = None,
    determinism: DeterminismSettings | None = _UNSET,
) -> Any:
    """Build the adapter for one replica of `pool` serving `model_ref`.

    `determinism` is the pool's resolved settings (the pool manager passes them for pools in
    determinism mode); when left out, they are read here from the pool's config.

    The mock engine treats model refs starting with `repo:mock/unloadable` as models whose
    load fails, so reload rollback can be exercised without a real engine.
    """
    adapter = pool.adapter.value if pool.adapter is not None else pool.engine.value
    ctx_max = pool.ctx or DEFAULT_CTX
    if adapter == "mock":
        from llama_orch.reference_impl.adapters.mock import MockAdapter

        return MockAdapter(
            pool.engine.value,
            replica_id,
            model_ref=model_ref,
            ctx_max=ctx_max,
            slots=4,  # a determinism pool's scheduler cap comes from its settings file
            preload_fail=(
                f"cannot load {model_ref}: no such model"
                if model_ref.startswith(UNLOADABLE_PREFIX)
                else None
            ),
        )
    url = base_url or pool.endpoint
    if url is None:
        raise LookupError(f"pool {pool.id} has neither an endpoint nor a launched engine")
    cls = adapter_class(pool.engine.value)
    kwargs: dict[str, Any] = {"model_ref": model_ref, "ctx_max": ctx_max}
    if pool.metrics_endpoint is not None:
        kwargs["metrics_url"] = pool.metrics_endpoint
    if pool.engine.value == "triton":
        kwargs["model_name"] = pool.served_model_name or pool.model
    if pool.engine.value == "llamacpp":
        # prompt caching can change results
        det = determinism_settings(pool) if determinism is _UNSET else determinism
        kwargs["cache_prompt"] = bool(det.request.get("cache_prompt", True)) if det else True
        if pool.model_sha256 is not None:  # verified against the file before the load
            kwargs["model_digest"] = f"sha256:{pool.model_sha256}"
        if pool.preemption.mode is PreemptionMode.HARD:  # interrupt by slot save/restore
            kwargs["slot_saves"] = True
            if pool.launch is not None:
                kwargs["slot_dir"] = slot_dir(pool)  # its slot files are deleted once restored
    return cls(replica_id, url, **kwargs)
