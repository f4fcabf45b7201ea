"""Stop sequences and log-probabilities on each simulator's wire, as each engine sends them.

Raw HTTP (httpx.ASGITransport) against the apps: llama.cpp's held-back pieces, stop-word final
event and `completion_probabilities` (shapes measured on llama-server b1-0c1e570); vLLM's
truncated text, `stop_reason` and legacy logprobs; TGI's kept stop text, `stop_sequence` and
`top_tokens`; TensorRT-LLM's kept stop words and `output_log_probs`. Plus the properties of
the shared logprob function (`tokens.step`).
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import httpx
import pytest

from llama_orch.engine_sim import llamacpp, tgi, triton, vllm
from llama_orch.engine_sim.engine import SimConfig, SimEngine
from llama_orch.engine_sim.tokens import SPLIT_MARGIN, iter_tokens, step, token_text

PROMPT, SEED = "hello", 7
WORDS = [text for _, text in iter_tokens(PROMPT, SEED, 8)]  # " victor", " bravo", " juliet"...
IDS = [tid for tid, _ in iter_tokens(PROMPT, SEED, 8)]
FULL = "".join(WORDS)


def post(module: Any, path: str, body: dict[str, Any], **app_kw: Any) -> httpx.Response:
    engine = SimEngine(SimConfig(module.__name__.rsplit(".", 1)[1]))
    app = module.create_app(engine, **app_kw)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
            return await client.post(path, json=body)

    return asyncio.run(go())


def events(text: str, prefix: str = "data: ") -> list[Any]:
    """The JSON payloads of the stream's `data` lines (vLLM's final `[DONE]` left out)."""
    blocks = [b[len(prefix) :] for b in text.split("\n\n") if b.startswith(prefix)]
    return [json.loads(b) for b in blocks if b != "[DONE]"]


def llama(**body: Any) -> list[dict[str, Any]]:
    base = {"prompt": PROMPT, "seed": SEED, "stream": True, "return_tokens": True}
    return events(post(llamacpp, "/completion", {**base, **body}).text)


# -- tokens.step ------------------------------------------------------------------------------


@pytest.mark.req("OC-HARNESS-8405")
def test_step_is_pure_greedy_and_a_distribution() -> None:
    for i in range(20):
        at = step(PROMPT, SEED, i, top_n=6)
        assert at == step(PROMPT, SEED, i, top_n=6)
        assert at.token_id == IDS[i] if i < 8 else True
        ids, lps = [t for t, _ in at.top], [lp for _, lp in at.top]
        assert ids[0] == at.token_id and lps[0] == at.logprob
        assert lps == sorted(lps, reverse=True) and len(set(ids)) == 6
        assert len({token_text(t) for t in ids}) == 6  # distinct texts: no collapsed keys
        assert sum(math.exp(lp) for lp in lps) <= 1.0 + 1e-9
        assert step(PROMPT, SEED, i).logprob == at.logprob  # top_n does not change values


@pytest.mark.req("OC-HARNESS-8405")
def test_split_index_is_a_near_tie_on_both_replicas() -> None:
    plain = step(PROMPT, SEED, 3, diverge_at=3, top_n=3)
    salted = step(PROMPT, SEED, 3, salt="b", diverge_at=3, top_n=3)
    assert plain.token_id == IDS[3] != salted.token_id
    for at in (plain, salted):
        assert at.top[0][1] - at.top[1][1] == pytest.approx(SPLIT_MARGIN)
    assert salted.top[1][0] == plain.token_id  # the runner-up is the other replica's choice
    assert step(PROMPT, SEED, 2, salt="b", diverge_at=3) == step(PROMPT, SEED, 2)
    away = step(PROMPT, SEED, 5, diverge_at=3, top_n=2)
    assert away.top[0][1] - away.top[1][1] > SPLIT_MARGIN


# -- llama.cpp --------------------------------------------------------------------------------


@pytest.mark.req("OC-ADAPT-5001")
def test_llamacpp_holds_text_that_may_start_a_stop_word_and_cuts_it() -> None:
    stop = WORDS[1][-2:] + WORDS[2][:3]  # spans two tokens: e.g. "vo ju"
    got = llama(n_predict=8, stop=[stop])
    partial, final = got[:-1], got[-1]
    assert [e["tokens"] for e in partial] == [[IDS[0]], [IDS[1]], [IDS[2]]]
    assert partial[0]["content"] == WORDS[0]
    assert partial[1]["content"] == ""  # held: ends with the start of the stop word
    assert partial[2]["content"] == WORDS[1][:-2]  # released with the stopping token
    assert "timings" in partial[2] and "timings" not in partial[1]
    assert final["stop"] is True and final["content"] == ""
    assert (final["stop_type"], final["stopping_word"]) == ("word", stop)
    assert final["tokens_predicted"] == 3
    assert final["generation_settings"]["stop"] == [stop]


@pytest.mark.req("OC-ADAPT-5001")
def test_llamacpp_earliest_stop_wins_and_text_held_at_the_limit_is_lost() -> None:
    got = llama(n_predict=8, stop=[WORDS[2], WORDS[1][:3]])
    assert got[-1]["stopping_word"] == WORDS[1][:3] and got[-1]["tokens_predicted"] == 2
    assert "".join(e["content"] for e in got) == WORDS[0]
    held = WORDS[2] + "zzz"  # the third token may begin it when n_predict runs out
    streamed = llama(n_predict=3, stop=[held])
    assert [e["content"] for e in streamed[:-1]] == [WORDS[0], WORDS[1], ""]
    assert streamed[-1]["stop_type"] == "limit" and streamed[-1]["stopping_word"] == ""
    whole = post(
        llamacpp, "/completion", {"prompt": PROMPT, "seed": SEED, "n_predict": 3, "stop": [held]}
    ).json()
    assert whole["content"] == "".join(WORDS[:3])  # the non-streamed answer keeps it


@pytest.mark.req("OC-ADAPT-5001")
def test_llamacpp_completion_probabilities_shape() -> None:
    got = llama(n_predict=2, n_probs=3, stop=[WORDS[1][1:]])
    first = got[0]["completion_probabilities"]
    assert len(first) == 1
    entry = first[0]
    assert set(entry) == {"id", "token", "bytes", "logprob", "top_logprobs"}
    assert entry["id"] == IDS[0] and entry["logprob"] == step(PROMPT, SEED, 0).logprob
    assert entry["bytes"] == list(entry["token"].encode())
    top = entry["top_logprobs"]
    assert len(top) == 3 and top[0]["id"] == IDS[0] and top[0]["token"] == WORDS[0]
    assert all(set(t) == {"id", "token", "bytes", "logprob"} for t in top)
    assert [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
    stopping = got[1]["completion_probabilities"][0]
    assert stopping["token"] == WORDS[1][:1]  # the text sent for the token, cut at the stop
    assert stopping["top_logprobs"][0]["token"] == WORDS[1]
    assert "completion_probabilities" not in llama(n_predict=1)[0]


def test_llamacpp_stop_must_hold_strings() -> None:
    answer = post(llamacpp, "/completion", {"prompt": "x", "stop": ["a", 3]})
    assert answer.status_code == 400 and "type must be string" in answer.text
    ignored = llama(n_predict=2, stop="not an array")  # llama.cpp reads arrays only
    assert ignored[-1]["stop_type"] == "limit"


# -- vLLM -------------------------------------------------------------------------------------


def vllm_chunks(**body: Any) -> list[dict[str, Any]]:
    base = {"prompt": PROMPT, "seed": SEED, "stream": True, "return_token_ids": True}
    answer = post(vllm, "/v1/completions", {**base, **body})
    assert answer.text.endswith("data: [DONE]\n\n"), answer.text
    return events(answer.text)


@pytest.mark.req("OC-ADAPT-5020")
def test_vllm_cuts_the_stop_string_and_lags_text_behind() -> None:
    stop = WORDS[2][1:]  # inside the third token
    got = vllm_chunks(max_tokens=8, stop=[stop, "zz"])
    choices = [c["choices"][0] for c in got]
    assert [c["token_ids"] for c in choices] == [[IDS[0]], [IDS[1]], [IDS[2]]]
    assert "".join(c["text"] for c in choices) == WORDS[0] + WORDS[1] + " "
    assert choices[0]["text"] == WORDS[0][: len(WORDS[0]) - (len(stop) - 1)]  # held back
    assert (choices[-1]["finish_reason"], choices[-1]["stop_reason"]) == ("stop", stop)
    assert all(c["finish_reason"] is None for c in choices[:-1])
    kept = vllm_chunks(max_tokens=8, stop=stop, include_stop_str_in_output=True)
    assert "".join(c["choices"][0]["text"] for c in kept) == "".join(WORDS[:3])
    plain = vllm_chunks(max_tokens=3, stop=["zzz"])  # no match: all text at the end
    assert "".join(c["choices"][0]["text"] for c in plain) == "".join(WORDS[:3])
    assert plain[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.req("OC-ADAPT-5020")
def test_vllm_first_stop_in_request_order_wins() -> None:
    got = vllm_chunks(max_tokens=8, stop=[WORDS[1][2:], WORDS[1][1:]])  # both in one token
    assert got[-1]["choices"][0]["stop_reason"] == WORDS[1][2:]


@pytest.mark.req("OC-ADAPT-5020")
def test_vllm_legacy_logprobs_shape() -> None:
    got = vllm_chunks(max_tokens=2, logprobs=3)
    lp = got[1]["choices"][0]["logprobs"]
    assert set(lp) == {"text_offset", "token_logprobs", "tokens", "top_logprobs"}
    assert lp["tokens"] == [WORDS[1]] and lp["text_offset"] == [len(WORDS[0])]
    assert lp["token_logprobs"] == [step(PROMPT, SEED, 1).logprob]
    top = lp["top_logprobs"][0]
    assert next(iter(top)) == WORDS[1] and len(top) == 3
    as_ids = vllm_chunks(max_tokens=1, logprobs=2, return_tokens_as_token_ids=True)
    assert as_ids[0]["choices"][0]["logprobs"]["tokens"] == [f"token_id:{IDS[0]}"]
    assert vllm_chunks(max_tokens=1)[0]["choices"][0]["logprobs"] is None
    refused = post(vllm, "/v1/completions", {"prompt": "x", "logprobs": 21})
    assert refused.status_code == 400 and "max allowed: 20" in refused.text
    bad = post(vllm, "/v1/completions", {"prompt": "x", "stop": [1]})
    assert bad.status_code == 400


# -- TGI --------------------------------------------------------------------------------------


def tgi_events(params: dict[str, Any]) -> list[dict[str, Any]]:
    body = {"inputs": PROMPT, "parameters": {"seed": SEED, "details": True, **params}}
    return events(post(tgi, "/generate_stream", body).text, prefix="data:")


@pytest.mark.req("OC-ADAPT-5040")
def test_tgi_keeps_the_stop_sequence_and_reports_stop_sequence() -> None:
    got = tgi_events({"max_new_tokens": 8, "stop": [WORDS[2][2:]]})
    assert [e["token"]["id"] for e in got] == IDS[:3]
    assert got[-1]["generated_text"] == "".join(WORDS[:3])  # the stop text stays in
    assert got[-1]["details"]["finish_reason"] == "stop_sequence"
    assert got[-1]["details"]["generated_tokens"] == 3
    inside = tgi_events({"max_new_tokens": 4, "stop": [WORDS[1][1:3]]})  # mid-token: missed
    assert inside[-1]["details"]["finish_reason"] == "length" and len(inside) == 4
    limit_first = tgi_events({"max_new_tokens": 2, "stop": [WORDS[1]]})
    assert limit_first[-1]["details"]["finish_reason"] == "length"


@pytest.mark.req("OC-ADAPT-5040")
def test_tgi_logprob_on_every_token_and_top_tokens_on_request() -> None:
    plain = tgi_events({"max_new_tokens": 2})
    assert "top_tokens" not in plain[0]
    assert plain[0]["token"]["logprob"] == step(PROMPT, SEED, 0).logprob
    got = tgi_events({"max_new_tokens": 2, "top_n_tokens": 3})
    top = got[1]["top_tokens"]
    assert [t["id"] for t in top] == [t for t, _ in step(PROMPT, SEED, 1, top_n=3).top]
    assert all(set(t) == {"id", "text", "logprob", "special"} for t in top)
    assert list(got[1]) == ["index", "token", "top_tokens", "generated_text", "details"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"stop": ["a", "b", "c", "d", "e"]}, "`stop` supports up to 4 stop sequences. Given: 5"),
        ({"top_n_tokens": 6}, "`top_n_tokens` must be >= 0 and <= 5. Given: 6"),
    ],
)
def test_tgi_validates_stop_and_top_n(params: dict[str, Any], message: str) -> None:
    answer = post(tgi, "/generate", {"inputs": "x", "parameters": params})
    assert answer.status_code == 422 and message in answer.json()["error"]


# -- Triton -----------------------------------------------------------------------------------


def triton_events(**fields: Any) -> list[dict[str, Any]]:
    body = {"text_input": PROMPT, "seed": SEED, "stream": True, **fields}
    return events(post(triton, "/v2/models/ensemble/generate_stream", body, output_ids=True).text)


@pytest.mark.req("OC-ADAPT-5060")
def test_triton_keeps_stop_words_and_fills_logprobs_on_request() -> None:
    got = triton_events(max_tokens=8, stop_words=[WORDS[1]], return_log_probs=True)
    assert [e["text_output"] for e in got] == WORDS[:2]  # ends on the stop word, kept
    assert [e["output_log_probs"] for e in got] == [step(PROMPT, SEED, i).logprob for i in (0, 1)]
    assert got[1]["cum_log_probs"] == pytest.approx(
        sum(step(PROMPT, SEED, i).logprob for i in (0, 1))
    )
    plain = triton_events(max_tokens=2, stop_words="")
    assert len(plain) == 2 and plain[0]["output_log_probs"] == 0.0
    assert plain[0]["cum_log_probs"] == 0.0
    single = triton_events(max_tokens=8, stop_words=WORDS[0])  # a string is one stop word
    assert len(single) == 1
