"""Stop sequences and top logprobs through every adapter, against its engine simulator.

One rule for all engines: the TokenEvents carry the text before the first stop string and the
stream ends with FINISH_STOP, whether the engine cuts the stop text itself (llama.cpp, vLLM) or
keeps it and may even miss it inside a token (TGI, TensorRT-LLM: the adapter cuts and closes).
Logprobs arrive in each engine's form and come out as `TokenEvent.logprob` and `.top`, equal
to the simulators' shared `tokens.step` values. The request fields are checked on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from llama_orch.engine_sim import triton as triton_sim
from llama_orch.engine_sim.engine import SimEngine
from llama_orch.engine_sim.tokens import iter_tokens, step, token_text
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
from llama_orch.reference_impl.adapters.mock import MockAdapter
from llama_orch.reference_impl.adapters.tgi import TgiAdapter
from llama_orch.reference_impl.adapters.triton import TritonAdapter
from llama_orch.reference_impl.adapters.vllm import VllmAdapter
from tests.test_sim_llamacpp import SimServer, sim_server, wait_until

GREEDY = SamplerParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0)
PROMPT, SEED = "hello", 7
WORDS = [text for _, text in iter_tokens(PROMPT, SEED, 8)]  # " victor", " bravo", " juliet"...
IDS = [tid for tid, _ in iter_tokens(PROMPT, SEED, 8)]
FULL = "".join(WORDS)
ENGINES = ("llamacpp", "vllm", "tgi", "triton", "mock")


@pytest.fixture(scope="module")
def server() -> Iterator[SimServer]:
    with sim_server() as sim:
        yield sim


def make(engine: str, server: SimServer, **kw: Any) -> tuple[Any, SimEngine | None]:
    """The adapter for `engine` and its fresh simulator (None for the in-process mock)."""
    common: dict[str, Any] = {"model_ref": "sha256:" + "0" * 64, "ctx_max": 2048, **kw}
    if engine == "mock":
        return MockAdapter("mock", "r0", **common), None
    sim = server.fresh(engine)
    if engine == "triton":
        server.app = triton_sim.create_app(sim, output_ids=True)
        return TritonAdapter("r0", server.url, model_name="ensemble", **common), sim
    cls = {"llamacpp": LlamaCppAdapter, "vllm": VllmAdapter, "tgi": TgiAdapter}[engine]
    return cls("r0", server.url, **common), sim


def run(
    adapter: Any, max_tokens: int = 8, stop: tuple[str, ...] = (), top: int = 0
) -> tuple[list[TokenEvent], StreamEnd | None]:
    req = CompletionRequest("q1", PROMPT, max_tokens, SEED, GREEDY, "greedy", stop, top)

    async def go() -> tuple[list[TokenEvent], StreamEnd | None]:
        try:
            stream = adapter.stream(req)
            return [e async for e in stream], stream.end
        finally:
            await adapter.close()

    return asyncio.run(go())


def text(events: list[TokenEvent]) -> str:
    assert [e.index for e in events] == list(range(len(events)))
    assert all(e.text for e in events)
    return "".join(e.text for e in events)


STOPS = {
    "spanning": WORDS[1][-2:] + WORDS[2][:3],  # "vo ju": ends inside the third token
    "whole_token": WORDS[2],  # the third token exactly: TGI and TensorRT-LLM stop themselves
    "at_the_start": WORDS[0][:3],  # nothing is left to stream
}


@pytest.mark.req("OC-ADAPT-5001", "OC-ADAPT-5020", "OC-ADAPT-5040", "OC-ADAPT-5060")
@pytest.mark.parametrize("stop", STOPS.values(), ids=STOPS.keys())
@pytest.mark.parametrize("engine", ENGINES)
def test_text_ends_before_the_stop_string_on_every_engine(
    engine: str, stop: str, server: SimServer
) -> None:
    adapter, sim = make(engine, server)
    events, end = run(adapter, stop=("zzz", stop))
    assert text(events) == FULL[: FULL.find(stop)]
    assert end is not None and end.finish_reason == FINISH_STOP
    assert end.tokens_out == 3 if stop != STOPS["at_the_start"] else end.tokens_out == 1
    if sim is not None:  # TGI and Triton ran on past a mid-token stop: closed by the adapter
        assert wait_until(lambda: sim.stats.running == 0, 2.0)


@pytest.mark.req("OC-ADAPT-5001", "OC-ADAPT-5020", "OC-ADAPT-5040", "OC-ADAPT-5060")
@pytest.mark.parametrize("engine", ENGINES)
def test_no_match_leaves_the_stream_whole(engine: str, server: SimServer) -> None:
    adapter, _ = make(engine, server)
    near_miss = WORDS[3] + "x"  # held back at the limit, then released
    events, end = run(adapter, max_tokens=4, stop=(near_miss,))
    assert text(events) == "".join(WORDS[:4])
    assert end is not None and (end.finish_reason, end.tokens_out) == (FINISH_LENGTH, 4)
    assert [e.token_id for e in events] == IDS[:4]  # llama.cpp: the last via /detokenize


def expected_top(i: int, n: int) -> tuple[TokenAlt, ...]:
    return tuple(TokenAlt(t, token_text(t), lp) for t, lp in step(PROMPT, SEED, i, top_n=n).top)


@pytest.mark.req("OC-ADAPT-5001", "OC-ADAPT-5040", "OC-HARNESS-8405")
@pytest.mark.parametrize("engine", ["llamacpp", "tgi", "mock"])
def test_top_logprobs_with_ids_and_text(engine: str, server: SimServer) -> None:
    adapter, _ = make(engine, server)
    events, _end = run(adapter, max_tokens=3, top=3)
    assert [e.token_id for e in events] == IDS[:3]
    assert [e.logprob for e in events] == [step(PROMPT, SEED, i).logprob for i in range(3)]
    assert [e.top for e in events] == [expected_top(i, 3) for i in range(3)]


@pytest.mark.req("OC-ADAPT-5020")
def test_vllm_top_logprobs_by_text_or_by_id(server: SimServer) -> None:
    events, _ = run(make("vllm", server)[0], max_tokens=2, top=3)
    assert [[(a.text, a.logprob) for a in e.top] for e in events] == [
        [(a.text, a.logprob) for a in expected_top(i, 3)] for i in range(2)
    ]
    assert all(a.token_id is None for e in events for a in e.top)
    adapter, sim = make("vllm", server, logprob_token_ids=True)
    events, _ = run(adapter, max_tokens=2, top=3)
    assert sim is not None and sim.last_request["return_tokens_as_token_ids"] is True
    assert [[a.token_id for a in e.top] for e in events] == [
        [a.token_id for a in expected_top(i, 3)] for i in range(2)
    ]


@pytest.mark.req("OC-ADAPT-5060")
def test_triton_gives_the_chosen_logprob_only(server: SimServer) -> None:
    adapter, sim = make("triton", server)
    events, _ = run(adapter, max_tokens=2, top=4)
    assert sim is not None and sim.last_request["return_log_probs"] is True
    assert [e.logprob for e in events] == [step(PROMPT, SEED, i).logprob for i in range(2)]
    assert all(e.top == () for e in events)
    plain, _ = run(make("triton", server)[0], max_tokens=2)
    assert all(e.logprob is None for e in plain)  # zeros are not logprobs


@pytest.mark.req("OC-ADAPT-5001", "OC-ADAPT-5020", "OC-ADAPT-5040", "OC-ADAPT-5060")
def test_stop_and_logprob_fields_on_the_wire(server: SimServer) -> None:
    sent = {}
    for engine in ("llamacpp", "vllm", "tgi", "triton"):
        adapter, sim = make(engine, server)
        run(adapter, max_tokens=2, stop=("a b", "c"), top=8)
        assert sim is not None
        sent[engine] = sim.last_request
    assert sent["llamacpp"]["stop"] == ["a b", "c"] and sent["llamacpp"]["n_probs"] == 8
    assert sent["vllm"]["stop"] == ["a b", "c"] and sent["vllm"]["logprobs"] == 8
    tgi_params = sent["tgi"]["parameters"]
    assert tgi_params["stop"] == ["a b", "c"] and tgi_params["top_n_tokens"] == 5  # TGI's cap
    assert sent["triton"]["stop_words"] == ["a b", "c"]
    plain = {}
    for engine in ("llamacpp", "vllm", "tgi", "triton"):
        adapter, sim = make(engine, server)
        run(adapter, max_tokens=1)
        assert sim is not None
        plain[engine] = sim.last_request
    assert not {"stop", "n_probs"} & set(plain["llamacpp"])
    assert not {"stop", "logprobs"} & set(plain["vllm"])
    assert not {"stop", "top_n_tokens"} & set(plain["tgi"]["parameters"])
    assert not {"stop_words", "return_log_probs"} & set(plain["triton"])


@pytest.mark.req("OC-ADAPT-5001")
def test_llamacpp_recovers_text_held_at_the_token_limit(server: SimServer) -> None:
    adapter, _ = make("llamacpp", server)
    events, end = run(adapter, max_tokens=3, stop=(WORDS[2] + "zzz",), top=2)
    assert text(events) == "".join(WORDS[:3])  # the third piece came from /detokenize
    assert events[-1].token_id == IDS[2] and events[-1].logprob == step(PROMPT, SEED, 2).logprob
    assert end is not None and end.finish_reason == FINISH_LENGTH


@pytest.mark.req("OC-ADAPT-5001")
def test_llamacpp_held_ids_join_the_next_piece_with_text(server: SimServer) -> None:
    adapter, _ = make("llamacpp", server)
    events, end = run(adapter, stop=(STOPS["spanning"],), top=2)
    # " bravo" was held (it ends with "vo"); llama-server sends " bra" with the third token.
    assert [(e.text, e.token_id) for e in events] == [(WORDS[0], IDS[0]), (" bra", IDS[2])]
    assert events[1].logprob == step(PROMPT, SEED, 2).logprob
    assert end is not None and end.tokens_out == 3
