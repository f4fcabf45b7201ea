"""Stop strings and top logprobs through LlamaCppAdapter on the real llama-server (CPU, Gemma 3
270M, greedy, no prompt cache).

The stop strings are taken from the model's own greedy output, so the tests do not depend on
what the model says. Marked `real_engine` and `slow` like tests/test_real_engine.py; a few
short requests against one server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from llama_orch.reference_impl.adapters import (
    FINISH_LENGTH,
    FINISH_STOP,
    CompletionRequest,
    SamplerParams,
    StreamEnd,
    TokenEvent,
)
from llama_orch.reference_impl.adapters.llamacpp import LlamaCppAdapter
from tests._engine import llama_server

pytestmark = [pytest.mark.real_engine, pytest.mark.slow]

GREEDY = SamplerParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0)
PROMPT = "The three primary colours are"


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with llama_server("--parallel", "1", "--no-cont-batching") as url:
        yield url


def collect(
    url: str, n: int, stop: tuple[str, ...] = (), top: int = 0
) -> tuple[list[TokenEvent], StreamEnd]:
    adapter = LlamaCppAdapter(
        "r0", url, model_ref="repo:test/gemma", ctx_max=2048, cache_prompt=False
    )
    req = CompletionRequest("s", PROMPT, n, 42, GREEDY, "greedy", stop, top)

    async def go() -> tuple[list[TokenEvent], StreamEnd]:
        try:
            stream = adapter.stream(req)
            events = [e async for e in stream]
            assert stream.end is not None
            return events, stream.end
        finally:
            await adapter.close()

    return asyncio.run(go())


@pytest.fixture(scope="module")
def greedy(server_url: str) -> list[TokenEvent]:
    events, end = collect(server_url, 8)
    assert len(events) == 8 and end.finish_reason == FINISH_LENGTH
    return events


@pytest.mark.req("OC-ADAPT-5001")
def test_real_stop_string_ends_the_stream_before_it(
    server_url: str, greedy: list[TokenEvent]
) -> None:
    full = "".join(e.text for e in greedy)
    third = greedy[2].text
    stop = third[len(third) // 2 :] + greedy[3].text[:1]  # spans the third and fourth token
    events, end = collect(server_url, 8, stop=(stop,))
    assert "".join(e.text for e in events) == full[: full.find(stop)]
    assert end.finish_reason == FINISH_STOP and end.tokens_out == 4
    assert events[0].token_id == greedy[0].token_id


@pytest.mark.req("OC-ADAPT-5001")
def test_real_text_held_at_the_token_limit_is_recovered(
    server_url: str, greedy: list[TokenEvent]
) -> None:
    # The third token may begin the stop string when n_predict runs out: llama-server never
    # streams it; the adapter gets it from /detokenize.
    events, end = collect(server_url, 3, stop=(greedy[2].text + "\u2603",))
    assert [(e.text, e.token_id) for e in events] == [(e.text, e.token_id) for e in greedy[:3]]
    assert end.finish_reason == FINISH_LENGTH


@pytest.mark.req("OC-ADAPT-5001")
def test_real_n_probs_become_logprob_and_top(server_url: str, greedy: list[TokenEvent]) -> None:
    events, _ = collect(server_url, 4, top=3)
    assert [e.token_id for e in events] == [e.token_id for e in greedy[:4]]  # sampling unchanged
    for event in events:
        assert event.logprob is not None and event.logprob <= 0.0
        assert len(event.top) == 3
        values = [alt.logprob for alt in event.top]
        assert values == sorted(values, reverse=True)
        # Pre-sampling probabilities: the greedy choice is the most likely token.
        assert event.top[0].token_id == event.token_id and event.top[0].text == event.text
        assert event.top[0].logprob == event.logprob
        assert len({alt.token_id for alt in event.top}) == 3
