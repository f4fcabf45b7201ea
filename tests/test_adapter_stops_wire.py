"""Stop and logprob handling on wire captured from a real llama-server, and its building blocks.

The canned streams are what llama-server b1-0c1e570 (llama-cpp-python 0.3.36's vendored
llama.cpp, Gemma 3 270M, greedy) sent for "The three primary colours are" with `stop` and
`n_probs` (native `/completion`) and with `stop` and `logprobs` (`/v1/completions`); final
events are shortened to the fields the adapters read. The StopScanner, PieceJoiner and
logprob-parser tests pin the shared rules of `reference_impl.adapters.stops` / `.logprobs`.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import httpx

from llama_orch.reference_impl.adapters import (
    FINISH_LENGTH,
    FINISH_STOP,
    CompletionRequest,
    SamplerParams,
    StreamEnd,
    TokenAlt,
    TokenEvent,
)
from llama_orch.reference_impl.adapters.llamacpp import LlamaCppAdapter
from llama_orch.reference_impl.adapters.logprobs import llama_entry, openai_logprobs, tgi_top
from llama_orch.reference_impl.adapters.stops import PieceJoiner, StopScanner
from llama_orch.reference_impl.adapters.vllm import VllmAdapter

GREEDY = SamplerParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0)
RED = {"id": 2604, "token": " red", "bytes": [32, 114, 101, 100], "logprob": -0.5116077065467834}
BLUE = {"id": 3730, "token": " blue", "bytes": [32, 98, 108, 117, 101], "logprob": -1.0832484}
YELLOW = {"id": 7070, "token": " yellow", "bytes": [32, 121, 101, 108, 108, 111, 119]}
COMMA = {"id": 236764, "token": ",", "bytes": [44], "logprob": -0.03077162802219391}


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)


def partial(content: str, token: int, n: int, probs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "index": 0,
        "content": content,
        "tokens": [token],
        "stop": False,
        "id_slot": -1,
        "tokens_predicted": n,
        "tokens_evaluated": 6,
        "completion_probabilities": probs,
    }


def held(entry: dict[str, Any], top: list[dict[str, Any]]) -> dict[str, Any]:
    """A probabilities entry of a held piece: the chosen token's text as sent, i.e. empty."""
    return {**entry, "token": "", "bytes": [], "top_logprobs": top}


# Stop "d, b", n_probs 2: " red" and "," are held, " re" comes with the stopping token.
NATIVE_STOP = sse(
    partial("", 2604, 1, [held(RED, [RED, {**BLUE, "logprob": -2.051452159881592}])]),
    partial("", 236764, 2, [held(COMMA, [COMMA, {"id": 568, "token": " (", "logprob": -4.45}])]),
    partial(
        " re",
        3730,
        3,
        [
            {
                **BLUE,
                "token": " re",
                "bytes": [32, 114, 101],
                "top_logprobs": [BLUE, {**YELLOW, "logprob": -1.1797183752059937}],
            }
        ],
    ),
    {
        "index": 0,
        "content": "",
        "tokens": [],
        "id_slot": 0,
        "stop": True,
        "tokens_predicted": 3,
        "stop_type": "word",
        "stopping_word": "d, b",
        "timings": {"predicted_n": 3, "predicted_ms": 89.136},
    },
)


def native(body: bytes, **answers: Any) -> tuple[LlamaCppAdapter, list[Any]]:
    seen: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, json.loads(request.content)))
        if request.url.path == "/detokenize":
            return httpx.Response(200, json=answers["detokenize"])
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    adapter = LlamaCppAdapter(
        "r0", "http://llama", model_ref="m", ctx_max=1024, transport=httpx.MockTransport(handler)
    )
    return adapter, seen


def collect(
    adapter: Any, stop: tuple[str, ...] = (), top: int = 0
) -> tuple[list[TokenEvent], StreamEnd | None]:
    req = CompletionRequest("w1", "The three primary colours are", 8, 42, GREEDY, "g", stop, top)

    async def go() -> tuple[list[TokenEvent], StreamEnd | None]:
        try:
            stream = adapter.stream(req)
            return [e async for e in stream], stream.end
        finally:
            await adapter.close()

    return asyncio.run(go())


def test_real_llama_server_stop_word_with_probabilities() -> None:
    adapter, seen = native(NATIVE_STOP)
    events, end = collect(adapter, stop=("d, b",), top=2)
    assert seen[0][1]["stop"] == ["d, b"] and seen[0][1]["n_probs"] == 2
    assert [(e.index, e.text, e.token_id) for e in events] == [(0, " re", 3730)]
    assert events[0].logprob == BLUE["logprob"]
    assert events[0].top == (
        TokenAlt(3730, " blue", BLUE["logprob"]),
        TokenAlt(7070, " yellow", -1.1797183752059937),
    )
    assert end == StreamEnd(3, FINISH_STOP, 89)


def test_real_llama_server_text_held_at_the_limit_comes_from_detokenize() -> None:
    body = sse(
        partial(" red", 2604, 1, []),
        partial(",", 236764, 2, []),
        partial("", 3730, 3, []),  # " blue" may begin " blue and": held, then n_predict ran out
        {"content": "", "tokens": [], "stop": True, "tokens_predicted": 3, "stop_type": "limit"},
    )
    adapter, seen = native(body, detokenize={"content": " blue"})
    events, end = collect(adapter, stop=(" blue and",))
    assert [(e.text, e.token_id) for e in events] == [
        (" red", 2604),
        (",", 236764),
        (" blue", 3730),
    ]
    assert seen[-1] == ("/detokenize", {"tokens": [3730]})
    assert end is not None and end.finish_reason == FINISH_LENGTH


def test_real_llama_server_openai_logprobs_give_the_ids() -> None:
    """`/v1/completions` of llama-server: no `token_ids`, logprobs in the `content` form."""

    def chunk(text: str, entry: dict[str, Any] | None, finish: str | None) -> dict[str, Any]:
        logprobs = {"content": [entry]} if entry else None
        choice = {"text": text, "index": 0, "logprobs": logprobs, "finish_reason": finish}
        return {"choices": [choice], "object": "text_completion", "model": "gemma"}

    body = (
        sse(
            chunk(" red", {**RED, "top_logprobs": [RED, {**BLUE, "logprob": -2.05}]}, None),
            chunk(",", {**COMMA, "top_logprobs": [COMMA]}, None),
            chunk(" b", {**BLUE, "token": " b", "top_logprobs": [BLUE]}, None),
            chunk("", None, "stop"),
        )
        + b"data: [DONE]\n\n"
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    adapter = VllmAdapter(
        "r0",
        "http://llama",
        model_ref="m",
        ctx_max=1024,
        served_model_name="gemma",
        include_usage=False,
        transport=httpx.MockTransport(handler),
    )
    events, end = collect(adapter, stop=("lue",), top=2)
    assert [(e.text, e.token_id) for e in events] == [(" red", 2604), (",", 236764), (" b", 3730)]
    assert events[0].top == (TokenAlt(2604, " red", RED["logprob"]), TokenAlt(3730, " blue", -2.05))
    assert end is not None and (end.finish_reason, end.tokens_out) == (FINISH_STOP, 3)


# -- building blocks -------------------------------------------------------------------------


def scan(stops: list[str], pieces: list[str]) -> tuple[list[tuple[str, int | None]], str | None]:
    scanner = StopScanner(stops)
    out: list[TokenEvent] = []
    for i, piece in enumerate(pieces):
        out += scanner.push(piece, i)
        if scanner.matched:
            break
    out += scanner.finish()
    assert [e.index for e in out] == list(range(len(out)))
    return [(e.text, e.token_id) for e in out], scanner.matched


def test_stop_scanner_cuts_at_the_first_stop_and_keeps_token_ids() -> None:
    pieces = [" red", ",", " blue", " and"]
    assert scan(["d, b"], pieces) == ([(" re", 0)], "d, b")
    assert scan(["lue"], pieces) == ([(" red", 0), (",", 1), (" b", 2)], "lue")
    assert scan([" blue", ","], pieces) == ([(" red", 0)], ",")  # earliest completed first
    assert scan([" red"], pieces) == ([], " red")
    assert scan([" blue and"], pieces[:3]) == ([(" red", 0), (",", 1), (" blue", 2)], None)
    assert scan([], pieces) == ([(p, i) for i, p in enumerate(pieces)], None)


def test_stop_scanner_holds_only_what_may_begin_a_stop() -> None:
    scanner = StopScanner(["ab"])
    assert [e.text for e in scanner.push("xa")] == []  # "a" may begin "ab": the token waits
    assert [e.text for e in scanner.push("c")] == ["xa", "c"]
    assert scanner.received == 2 and scanner.released == 2 and scanner.matched is None
    assert scanner.push("a") == [] and [e.text for e in scanner.push("b")] == []
    assert scanner.matched == "ab" and scanner.push("more") == [] and scanner.finish() == []


def test_piece_joiner_lends_held_ids_to_the_next_text() -> None:
    joiner = PieceJoiner()
    assert joiner.join(0, "", [5], [(5, -0.5, ())]) is None
    assert joiner.join(0, "", [], [(6, -0.25, ())]) is None  # an id from the logprobs only
    event = joiner.join(0, "ab", [7], [])
    assert event == TokenEvent(0, "ab", 7, -0.25, ())
    assert joiner.held == [] and joiner.join(1, "c", [8], []) == TokenEvent(1, "c", 8)


def test_logprob_parsers_read_every_engine_form() -> None:
    pre = {
        "id": 1,
        "logprob": -0.5,
        "top_logprobs": [
            {"id": 2, "token": "b", "logprob": -2.0},
            {"id": 1, "token": "a", "logprob": -0.5},
        ],
    }
    assert llama_entry(pre) == (1, -0.5, (TokenAlt(1, "a", -0.5), TokenAlt(2, "b", -2.0)))
    assert llama_entry(pre, limit=1)[2] == (TokenAlt(1, "a", -0.5),)
    post = {
        "id": 1,
        "token": "a",
        "prob": 1.0,
        "top_probs": [{"id": 1, "token": "a", "prob": 1.0}, {"id": 3, "token": "c", "prob": 0.0}],
    }
    assert llama_entry(post) == (1, 0.0, (TokenAlt(1, "a", 0.0), TokenAlt(3, "c", -math.inf)))
    legacy = {
        "tokens": ["token_id:9", " x"],
        "token_logprobs": [-0.1, -0.2],
        "top_logprobs": [{"token_id:9": -0.1, "token_id:4": -3.0}, {" y": -1.0, " x": -0.2}],
        "text_offset": [0, 3],
    }
    assert openai_logprobs(legacy, limit=1) == [
        (9, -0.1, (TokenAlt(9, "", -0.1),)),
        (None, -0.2, (TokenAlt(None, " x", -0.2),)),
    ]
    assert openai_logprobs(None) == [] and llama_entry("junk") == (None, None, ())
    top = [{"id": 4, "text": "d", "logprob": -3.0, "special": False}, {"id": 5, "text": "e"}]
    assert tgi_top(top) == (TokenAlt(4, "d", -3.0),)  # an entry without logprob is dropped
