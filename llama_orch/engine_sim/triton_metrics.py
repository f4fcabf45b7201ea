"""Triton's metrics server, simulated: its own port, `GET /metrics` and nothing else.

Real Triton serves Prometheus text only from its metrics server (`--metrics-port`, 8002 by
default); the inference port answers `/metrics` like any unknown path, `404
{"error":"Not Found"}`. The metrics server answers `GET /metrics` (exactly that path) with
`text/plain; charset=utf-8`, any other path with `400` and no body, and any other method with
`405 {"error":"Method Not Allowed"}` (triton-inference-server/server src/http_server.cc,
`HTTPMetricsServer::Handle` and `HTTPAPIServer::Handle`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import falcon
import falcon.asgi

from llama_orch.engine_sim.engine import SimEngine

KV_TOKENS_PER_BLOCK = 64


@dataclass
class TritonCounters:
    """What Triton counts per model, in the simulator's terms."""

    success: int = 0
    failure: Counter[str] = field(default_factory=Counter)
    inference_count: int = 0
    request_us: float = 0.0
    last_inference_ms: int = 0


def stats_body(model: str, c: TritonCounters) -> dict[str, Any]:
    """`GET /v2/models/{m}/stats`, the statistics extension's per-model counts."""
    fails = sum(c.failure.values())
    return {
        "model_stats": [
            {
                "name": model,
                "version": "1",
                "last_inference": c.last_inference_ms,
                "inference_count": c.inference_count,
                "execution_count": c.inference_count,
                "inference_stats": {
                    "success": {"count": c.success, "ns": int(c.request_us * 1000)},
                    "fail": {"count": fails, "ns": 0},
                    "queue": {"count": c.success, "ns": 0},
                },
                "batch_stats": [],
            }
        ]
    }


def metrics_text(engine: SimEngine, model: str, c: TritonCounters) -> str:
    """`nv_inference_*` counters and the TensorRT-LLM request and KV-block gauges."""
    st, cfg = engine.stats, engine.config
    mv, trt = f'model="{model}",version="1"', 'model="tensorrt_llm",version="1"'
    per_slot = -(-cfg.ctx // KV_TOKENS_PER_BLOCK)
    total, used = cfg.slots * per_slot, st.running * per_slot
    requests = {
        "active": st.running,
        "max": cfg.slots,
        "scheduled": st.running,
        "context": 0,
        "waiting": st.waiting,
    }
    blocks = {
        "max": total,
        "free": total - used,
        "used": used,
        "tokens_per": KV_TOKENS_PER_BLOCK,
        "reused": 0,
        "fraction": round(used / total, 6) if total else 0.0,
    }
    fails = [(f'{mv},reason="{r}"', n) for r, n in sorted(c.failure.items())]
    families: dict[str, tuple[str, list[tuple[str, float]]]] = {
        "nv_inference_request_success": ("counter", [(mv, c.success)]),
        "nv_inference_request_failure": ("counter", fails),
        "nv_inference_count": ("counter", [(mv, c.inference_count)]),
        "nv_inference_pending_request_count": ("gauge", [(mv, st.waiting)]),
        "nv_inference_request_duration_us": ("counter", [(mv, int(c.request_us))]),
        "nv_inference_queue_duration_us": ("counter", [(mv, 0)]),
        "nv_trt_llm_request_metrics": (
            "gauge",
            [(f'{trt},request_type="{k}"', v) for k, v in requests.items()],
        ),
        "nv_trt_llm_kv_cache_block_metrics": (
            "gauge",
            [(f'{trt},kv_cache_block_type="{k}"', v) for k, v in blocks.items()],
        ),
    }
    out: list[str] = []
    for name, (kind, samples) in families.items():
        out.append(f"# TYPE {name} {kind}")
        out += [f"{name}{{{labels}}} {value}" for labels, value in samples]
    return "\n".join(out) + "\n"


def create_metrics_app(engine: SimEngine, model: str, counters: TritonCounters) -> falcon.asgi.App:
    """The metrics server of one simulated Triton, sharing the inference side's counters."""
    app = falcon.asgi.App()

    class Metrics:
        async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
            resp.content_type = "text/plain; charset=utf-8"
            resp.text = metrics_text(engine, model, counters)

    async def elsewhere(req: falcon.asgi.Request, resp: falcon.asgi.Response, **_: str) -> None:
        if req.method != "GET":
            resp.status = falcon.HTTP_405
            resp.media = {"error": "Method Not Allowed"}
            return
        resp.status = falcon.HTTP_400
        resp.content_type = "text/plain; charset=utf-8"
        resp.data = b""

    app.add_route("/metrics", Metrics())
    app.add_sink(elsewhere, prefix="/")
    return app
