"""llama-server's endpoints besides `/completion`: health, props, slots, metrics, tokenize.

Shapes as build b1-0c1e570 writes them (`llamacpp_params`); JSON answers carry
`application/json; charset=utf-8`, errors `{"error": {"code", "message", "type"}}`, and an
unknown path `404 {"error": {"message": "File Not Found", "type": "not_found_error", ...}}`.
`/health` answers `503` "Loading model" while `engine.state` is not "ready".
"""

from __future__ import annotations

from typing import Any, Protocol

import falcon
import falcon.asgi

from llama_orch.engine_sim import llamacpp_params as lp
from llama_orch.engine_sim.engine import SimEngine
from llama_orch.engine_sim.tokens import token_text
from llama_orch.engine_sim.wire import dumps, json_body, prometheus_text

JSON = "application/json; charset=utf-8"


class SlotView(Protocol):
    """What `/slots` needs from the completion side's slot book."""

    last: dict[int, dict[str, Any]]

    def processing(self) -> set[int]: ...


def answer(resp: falcon.asgi.Response, obj: Any, status: int = 200) -> None:
    """A JSON answer the way llama-server writes it."""
    resp.status = status
    resp.content_type = JSON
    resp.data = dumps(obj).encode()


def error(
    resp: falcon.asgi.Response, code: int, message: str, kind: str = "invalid_request_error"
) -> None:
    answer(resp, {"error": {"code": code, "message": message, "type": kind}}, code)


def metrics_text(engine: SimEngine) -> str:
    """The `llamacpp:` metrics of b1-0c1e570, plus the KV gauge older builds export."""
    st, cfg = engine.stats, engine.config
    return prometheus_text(
        "llamacpp:",
        [
            ("prompt_tokens_total", "counter", st.prompt_tokens),
            ("prompt_tokens_cached_total", "counter", 0),
            ("prompt_seconds_total", "counter", st.prompt_seconds),
            ("tokens_predicted_total", "counter", st.generated_tokens),
            ("tokens_predicted_seconds_total", "counter", st.decode_seconds),
            ("n_decode_total", "counter", st.generated_tokens),
            ("n_tokens_max", "counter", cfg.ctx if st.requests else 0),
            ("spec_decode_num_draft_tokens_total", "counter", 0),
            ("spec_decode_num_accepted_tokens_total", "counter", 0),
            ("spec_decode_num_drafts_total", "counter", 0),
            ("prompt_tokens_seconds", "gauge", 0.0),
            ("predicted_tokens_seconds", "gauge", 0.0),
            ("requests_processing", "gauge", st.running),
            ("requests_deferred", "gauge", st.waiting),
            ("n_busy_slots_per_decode", "gauge", st.running),
            ("kv_cache_usage_ratio", "gauge", st.running / cfg.slots),  # busy slots
        ],
    )


class _Plain:
    """The responders; `slots` is the completion side's slot book."""

    def __init__(self, engine: SimEngine, slots: SlotView) -> None:
        self.engine = engine
        self.slots = slots

    async def on_get_health(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if self.engine.state != "ready":
            return error(resp, 503, "Loading model", "unavailable_error")
        answer(resp, {"status": "ok"})
        return None

    async def on_get_props(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        cfg = self.engine.config
        body = lp.props(
            slots=cfg.slots,
            ctx=cfg.ctx,
            model=cfg.model,
            build_info=cfg.engine_version,
            defaults=lp.REQUEST_DEFAULTS,
        )
        answer(resp, body)

    async def on_get_slots(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        cfg = self.engine.config
        busy = self.slots.processing()
        if req.get_param_as_int("fail_on_no_slot") and len(busy) >= cfg.slots:
            return error(resp, 503, "no slot available", "unavailable_error")
        last = self.slots.last
        answer(resp, [lp.slot(i, cfg.ctx, i in busy, last.get(i)) for i in range(cfg.slots)])
        return None

    async def on_get_metrics(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = "text/plain; version=0.0.4"
        resp.text = metrics_text(self.engine)

    async def on_post_tokenize(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await json_body(req)
        content = body.get("content") if isinstance(body, dict) else None
        if not isinstance(content, str):
            return error(resp, 400, '"content" must be a string', "invalid_request_error")
        ids = self.engine.tokenize(content)
        if body.get("with_pieces"):
            pieces = zip(ids, content.split(), strict=True)
            answer(resp, {"tokens": [{"id": i, "piece": w} for i, w in pieces]})
        else:
            answer(resp, {"tokens": ids})
        return None

    async def on_post_detokenize(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        body = await json_body(req)
        ids = body.get("tokens") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(type(t) is int for t in ids):
            return error(resp, 400, '"tokens" must be an array of ids')
        answer(resp, {"content": "".join(token_text(t) for t in ids)})
        return None


async def _not_found(req: falcon.asgi.Request, resp: falcon.asgi.Response, **_: str) -> None:
    body = {"error": {"message": "File Not Found", "type": "not_found_error", "code": 404}}
    answer(resp, body, 404)


def add_plain_routes(app: falcon.asgi.App, engine: SimEngine, slots: SlotView) -> None:
    """Route the plain endpoints, and answer any other path like llama-server does."""
    plain = _Plain(engine, slots)
    for name in ("health", "props", "slots", "metrics", "tokenize", "detokenize"):
        app.add_route(f"/{name}", plain, suffix=name)
    app.add_sink(_not_found, prefix="/")
