"""The determinism suite: corpus stability, equal replicas pass, and each negative control fails.

Simulator replicas give the fast checks (their tokens are a pure function of prompt, seed and
index, and a divergent salt departs at a directive's `diverge_at`); the real-engine test runs
the full corpus on two llama-server replicas with the llama.cpp determinism settings.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from llama_orch.cli.commands.determinism import determinism
from llama_orch.determinism_suite.corpus import (
    CORPUS_PATH,
    MIN_CASES,
    CorpusError,
    load_corpus,
    parse_corpus,
)
from llama_orch.determinism_suite.direct import Replica, collect, run_direct
from llama_orch.determinism_suite.report import (
    build_report,
    failure_bound,
    to_markdown,
    write_reports,
)
from llama_orch.determinism_suite.runner import ReplicaSetMismatch, RunResult, compare
from llama_orch.engine_sim.engine import SimConfig
from llama_orch.reference_impl.adapters.llamacpp import LlamaCppAdapter
from llama_orch.reference_impl.pool.determinism import load_settings
from tests._engine import llama_server
from tests._server import API_KEY, running_server
from tests._sims import running_sim

NEGATIVE = (
    Path(__file__).resolve().parents[1]
    / "llama_orch"
    / "determinism_suite"
    / "negative_corpus.yaml"
)
# Pinned together: a changed case is a new corpus version (OC-TEST-7003).
CORPUS_VERSION = "2"
CORPUS_HASH = "sha256:1f5d76008aff526bd2d4418ab6d42310570a768bbea092e96f894ab94c563b62"


def _adapter(url: str, rid: str) -> LlamaCppAdapter:
    return LlamaCppAdapter(rid, url, model_ref="sim/tiny-llama", ctx_max=2048, cache_prompt=False)


def _run(corpus, left_url: str, right_url: str, **kw) -> RunResult:
    left_profile = kw.pop("left_profile", corpus.sampler_profile_version)

    async def go() -> RunResult:
        a, b = _adapter(left_url, "a"), _adapter(right_url, "b")
        try:
            return await run_direct(
                corpus,
                Replica(a, left_profile),
                Replica(b, corpus.sampler_profile_version),
                order_seed=kw.pop("order_seed", 7),
                **kw,
            )
        finally:
            await a.close()
            await b.close()

    return asyncio.run(go())


# -- corpus -------------------------------------------------------------------------------


@pytest.mark.req("OC-TEST-7003")
def test_corpus_has_enough_varied_cases_and_a_pinned_version_hash() -> None:
    corpus = load_corpus()
    assert len(corpus) >= MIN_CASES
    assert (corpus.version, corpus.content_hash) == (CORPUS_VERSION, CORPUS_HASH)
    assert load_corpus().content_hash == corpus.content_hash  # stable across loads
    assert len({c.seed for c in corpus.cases}) == len(corpus)  # each case has its own seed
    assert any(c.greedy for c in corpus.cases) and any(not c.greedy for c in corpus.cases)
    assert any(any(ord(ch) > 127 for ch in c.prompt) for c in corpus.cases)
    assert max(len(c.prompt) for c in corpus.cases) > 20 * min(len(c.prompt) for c in corpus.cases)
    assert all(not c.prompt.startswith("[[sim") for c in corpus.cases)
    assert sum(1 for c in corpus.cases if c.stop) >= 4  # stop sequences, greedy and sampled
    assert {c.profile for c in corpus.cases if c.stop} >= {"det-greedy", "det-warm"}
    # Near the context limit: prompts of ~2,000 tokens in a 2,048 budget (about three
    # characters a token for that text, measured with the real model's tokenizer).
    assert max(len(c.prompt) for c in corpus.cases) > 5_900 and corpus.ctx_budget == 2048


@pytest.mark.req("OC-TEST-7003")
def test_any_edit_to_a_case_changes_the_hash_and_broken_corpora_are_rejected() -> None:
    doc = yaml.safe_load(CORPUS_PATH.read_text(encoding="utf-8"))
    base = parse_corpus(doc).content_hash
    doc["cases"][5]["seed"] += 1
    assert parse_corpus(doc).content_hash != base
    doc["cases"][6]["id"] = doc["cases"][7]["id"]
    with pytest.raises(CorpusError, match="duplicate"):
        parse_corpus(doc)
    with pytest.raises(CorpusError, match="at least 64"):
        parse_corpus({**doc, "cases": doc["cases"][8:20]})
    doc["cases"][6]["id"] = "fresh-id"
    doc["cases"][6]["sampler"] = "det-unknown"
    with pytest.raises(CorpusError, match="sampler must name a profile"):
        parse_corpus(doc)
    doc["cases"][6]["sampler"] = "det-greedy"
    doc["cases"][6]["stop"] = ["a", "b", "c", "d", "e"]
    with pytest.raises(CorpusError, match="stop must be"):
        parse_corpus(doc)


# -- equal replicas -----------------------------------------------------------------------


@pytest.mark.req("OC-TEST-7001", "OC-TEST-7002", "ORCH-3050")
def test_two_identical_simulator_replicas_agree_on_every_case(tmp_path: Path) -> None:
    corpus = load_corpus()
    cfg = SimConfig("llamacpp", slots=1)
    with running_sim(cfg) as (url_a, _), running_sim(cfg) as (url_b, _):
        run = _run(corpus, url_a, url_b)
    report = write_reports(run, tmp_path)
    assert report["summary"]["equal"] == len(corpus) and report["summary"]["passed"]
    assert all(c["compared_by"] == "token_id" for c in report["cases"])
    assert report["settings_confirmed"] and report["settings_applied"]["request"] == {
        "cache_prompt": False,
    }
    assert report["mode"] == "direct" and report["settings_applied"]["start_args"] == [
        "--parallel",
        "1",
        "--no-cont-batching",
    ]
    assert report["corpus"]["version"] == corpus.version
    assert report["corpus"]["content_hash"] == corpus.content_hash
    assert report["corpus"]["cases"] == len(corpus) == len(set(report["corpus"]["seeds"]))
    env = report["environment"]
    assert {r["engine_version"] for r in env["replicas"]} == {"sim-1.0"}
    assert env["host_cpu"] and env["replicas"][0]["model_digest"].startswith("sha256:")
    assert "0 failures in" in report["bound"]["statement"]
    assert report["bound"]["rule_of_three"] == pytest.approx(3 / len(corpus), abs=1e-4)
    saved = json.loads((tmp_path / "determinism.json").read_text(encoding="utf-8"))
    assert saved["summary"] == report["summary"]
    assert "0 failures in" in (tmp_path / "determinism.md").read_text(encoding="utf-8")


@pytest.mark.req("OC-TEST-7002")
def test_unconfirmed_settings_mark_equal_cases_unverified_not_passed() -> None:
    corpus = parse_corpus(yaml.safe_load(NEGATIVE.read_text(encoding="utf-8")), min_cases=1)
    cfg = SimConfig("llamacpp", slots=4)  # llama.cpp determinism needs one slot
    with running_sim(cfg) as (url_a, _), running_sim(cfg) as (url_b, _):
        run = _run(corpus, url_a, url_b)
    report = build_report(run)
    assert not report["settings_confirmed"] and "slots_total is 4" in run.settings_problems[0]
    assert report["summary"]["unverified"] == len(corpus) and not report["summary"]["passed"]


# -- negative controls --------------------------------------------------------------------


@pytest.mark.req("OC-TEST-7001", "ORCH-3050")
def test_divergent_replica_is_caught_at_the_directive_index() -> None:
    corpus = parse_corpus(yaml.safe_load(NEGATIVE.read_text(encoding="utf-8")), min_cases=1)
    with (
        running_sim(SimConfig("llamacpp", slots=1)) as (url_a, _),
        running_sim(SimConfig("llamacpp", slots=1, divergent_salt="x")) as (url_b, _),
    ):
        run = _run(corpus, url_a, url_b)
    report = build_report(run)
    by_id = {c["id"]: c for c in report["cases"]}
    assert by_id["neg-diverge-3-greedy"]["first_diff_index"] == 3
    assert by_id["neg-diverge-3-sampled"]["first_diff_index"] == 3
    assert by_id["neg-diverge-0"]["first_diff_index"] == 0
    assert by_id["neg-no-directive"]["status"] == "equal"
    split = by_id["neg-diverge-3-greedy"]
    assert split["status"] == "diverged" and split["left"]["token_id"] != split["right"]["token_id"]
    assert split["left"]["before"] == split["right"]["before"] != ""
    assert split["finish_reason_equal"] and split["token_count_equal"]
    assert split["request_json"]["left"]["prompt"].startswith("[[sim diverge_at=3]]")
    assert split["request_json"]["left"]["cache_prompt"] is False
    assert report["summary"]["diverged"] == 3 and not report["summary"]["passed"]
    assert "diverged" in report["bound"]["statement"]
    assert "neg-diverge-3-greedy | 11 | 3 |" in to_markdown(report)
    # Replayed with top logprobs: how close each side's choice was at the split.
    margin = split["logprob_margin"]
    assert margin["left"]["token_id"] == split["left"]["token_id"]
    assert margin["right"]["token_id"] == split["right"]["token_id"]
    assert isinstance(margin["left"]["margin"], float) and margin["left"]["margin"] >= 0


@pytest.mark.req("OC-TEST-7001", "ORCH-3050")
def test_a_different_seed_on_one_side_diverges() -> None:
    corpus = load_corpus()
    cases = corpus.cases[:8]
    shifted = tuple(dataclasses.replace(c, seed=c.seed + 1) for c in cases)
    with running_sim(SimConfig("llamacpp", slots=1)) as (url, _):

        async def go() -> list:
            a, b = _adapter(url, "a"), _adapter(url, "b")
            try:
                left = [await collect(Replica(a, "det-v2"), c, "a") for c in cases]
                right = [await collect(Replica(b, "det-v2"), c, "b") for c in shifted]
            finally:
                await a.close()
                await b.close()
            return [compare(c, lt, rt, True) for c, lt, rt in zip(cases, left, right, strict=True)]

        results = asyncio.run(go())
    assert all(r.status == "diverged" for r in results)
    assert all(r.first_diff is not None and r.first_diff <= 2 for r in results)


@pytest.mark.req("OC-TEST-7001")
@pytest.mark.parametrize("what", ["engine_version", "model", "sampler_profile_version"])
def test_replicas_outside_one_replica_set_are_refused_before_any_request(what: str) -> None:
    corpus = parse_corpus(yaml.safe_load(NEGATIVE.read_text(encoding="utf-8")), min_cases=1)
    other = {
        "engine_version": SimConfig("llamacpp", slots=1, engine_version="sim-2.0"),
        "model": SimConfig("llamacpp", slots=1),
        "sampler_profile_version": SimConfig("llamacpp", slots=1),
    }[what]
    with (
        running_sim(SimConfig("llamacpp", slots=1)) as (url_a, eng_a),
        running_sim(other) as (url_b, eng_b),
    ):

        async def go() -> None:
            a, b = _adapter(url_a, "a"), _adapter(url_b, "b")
            if what == "model":
                b = LlamaCppAdapter("b", url_b, model_ref="other/model", ctx_max=2048)
            profile = "det-v3" if what == "sampler_profile_version" else "det-v2"
            try:
                await run_direct(corpus, Replica(a, "det-v2"), Replica(b, profile))
            finally:
                await a.close()
                await b.close()

        with pytest.raises(ReplicaSetMismatch) as info:
            asyncio.run(go())
        assert eng_a.stats.requests == 0 and eng_b.stats.requests == 0
    assert info.value.field == {"model": "model_digest"}.get(what, what)


def test_failure_bound_is_the_rule_of_three() -> None:
    assert failure_bound(100, 0)["rule_of_three"] == 0.03
    assert 0.029 < failure_bound(100, 0)["upper_bound_95"] < 0.031
    assert "diverged" in failure_bound(100, 2)["statement"]


@pytest.mark.req("OC-TEST-7001")
def test_cli_reports_equal_replicas_and_refuses_a_mixed_set(tmp_path: Path) -> None:
    cfg = SimConfig("llamacpp", slots=1)
    runner = CliRunner()
    with running_sim(cfg) as (url_a, _), running_sim(cfg) as (url_b, _):
        ok = runner.invoke(
            determinism,
            ["--engine-url", url_a, "--engine-url", url_b, "--report-dir", str(tmp_path)],
        )
    assert ok.exit_code == 0, ok.output
    n = len(load_corpus())
    assert f"{n}/{n} equal" in ok.output
    assert f"[determinism] {2 * n}/{2 * n} requests" in ok.stderr  # progress while running
    assert (tmp_path / "determinism.md").exists()
    with (
        running_sim(cfg) as (url_a, _),
        running_sim(SimConfig("llamacpp", slots=1, engine_version="sim-9")) as (url_b, _),
    ):
        refused = runner.invoke(determinism, ["--engine-url", url_a, "--engine-url", url_b])
    assert refused.exit_code == 2 and "engine_version" in refused.output
    help_text = runner.invoke(determinism, ["--help"]).output
    assert "Pinned mode" in help_text and "Direct mode" in help_text


# -- pinned mode (through the orchestrator) -------------------------------------------------

PROFILES = """
sampler_profiles:
  det-greedy: {temperature: 0.0, top_k: 1, top_p: 1.0, min_p: 0.0}
  det-warm: {temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.05}
  det-hot: {temperature: 1.2, top_k: 0, top_p: 0.9, min_p: 0.02}
"""
MOCK_SET = (
    "auth: {api_keys_env: LLORCH_API_KEY}\n"
    + PROFILES
    + """
pools:
  - id: det-mock
    engine: llamacpp
    adapter: mock
    model: repo:mock/tiny
    ctx: 4096
    devices: []
    allow_cpu_inference: true
    replicas: 2
    determinism: true
    sampler_profile_version: det-greedy
    queue: {capacity: 64, full_policy: reject}
"""
)


def _sim_pools(url_a: str, url_b: str) -> str:
    """Two one-replica pools on two simulators; equal identity makes them one replica set."""
    pools = "".join(
        f"""
  - id: sim-{name}
    engine: llamacpp
    model: repo:sim/tiny-llama
    endpoint: {url}
    ctx: 4096
    devices: []
    allow_cpu_inference: true
    determinism: true
    sampler_profile_version: det-greedy
"""
        for name, url in (("a", url_a), ("b", url_b))
    )
    return "auth: {api_keys_env: LLORCH_API_KEY}\n" + PROFILES + "pools:" + pools


def _pinned_cli(url: str, tmp_path: Path, *extra: str):
    return CliRunner().invoke(
        determinism,
        ["--target", url, "--report-dir", str(tmp_path), "--ready-wait", "10", "-q", *extra],
        env={"LLORCH_API_KEY": API_KEY},
    )


@pytest.mark.req("ORCH-3045", "OC-CORE-1030", "OC-TEST-7001")
def test_pinned_mode_through_the_reference_passes_every_case_on_two_replicas(
    tmp_path: Path,
) -> None:
    with running_server(MOCK_SET) as server:
        result = _pinned_cli(server.url, tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "determinism.json").read_text(encoding="utf-8"))
    corpus = load_corpus()
    assert report["mode"] == "pinned" and report["target"] == server.url
    assert report["summary"]["equal"] == len(corpus) and report["settings_confirmed"]
    assert [r["replica_id"] for r in report["environment"]["replicas"]] == [
        "det-mock-r0",
        "det-mock-r1",
    ]
    assert all(c["compared_by"] == "token_id" for c in report["cases"])
    assert "no logprob margin" in report["logprob_margin_note"]


@pytest.mark.req("ORCH-3045", "OC-CORE-1030", "OC-TEST-7001", "ORCH-3050")
def test_pinned_mode_catches_a_divergent_replica_at_the_directive_index(tmp_path: Path) -> None:
    with (
        running_sim(SimConfig("llamacpp", slots=1)) as (url_a, _),
        running_sim(SimConfig("llamacpp", slots=1, divergent_salt="x")) as (url_b, _),
        running_server(_sim_pools(url_a, url_b)) as server,
    ):
        result = _pinned_cli(server.url, tmp_path, "--corpus", str(NEGATIVE), "--small-corpus-ok")
    assert result.exit_code == 1, result.output
    report = json.loads((tmp_path / "determinism.json").read_text(encoding="utf-8"))
    by_id = {c["id"]: c for c in report["cases"]}
    assert by_id["neg-diverge-3-greedy"]["first_diff_index"] == 3
    assert by_id["neg-diverge-0"]["first_diff_index"] == 0
    assert by_id["neg-no-directive"]["status"] == "equal"
    replay = by_id["neg-diverge-3-greedy"]["request_json"]["left"]
    assert replay["placement"]["replica_id"] == "sim-a-r0" and replay["seed"] == 11
    assert replay["sampler_profile_version"] == "det-greedy"


@pytest.mark.req("ORCH-3046", "OC-TEST-7001")
def test_pinned_mode_refuses_replicas_of_different_engine_versions(tmp_path: Path) -> None:
    """The orchestrator keeps them in separate sets, so no set has two replicas to compare:
    the run stops before any task (exit 2)."""
    with (
        running_sim(SimConfig("llamacpp", slots=1)) as (url_a, eng_a),
        running_sim(SimConfig("llamacpp", slots=1, engine_version="sim-9")) as (url_b, eng_b),
        running_server(_sim_pools(url_a, url_b)) as server,
    ):
        before = eng_a.stats.requests + eng_b.stats.requests
        result = _pinned_cli(server.url, tmp_path, "--ready-wait", "1")
        after = eng_a.stats.requests + eng_b.stats.requests
    assert result.exit_code == 2 and "two ready replicas" in result.output
    assert after == before  # no completion was sent to either engine
    assert not (tmp_path / "determinism.json").exists()


# -- real engine --------------------------------------------------------------------------


@pytest.mark.real_engine
@pytest.mark.slow
@pytest.mark.req("OC-TEST-7001", "OC-TEST-7002", "ORCH-3050")
def test_two_real_llama_server_replicas_agree_directly(tmp_path: Path) -> None:
    """Direct mode on the real engine with a cross-section of the corpus (the full corpus
    runs through the orchestrator in `make test`: `llorch determinism`)."""
    full = load_corpus()
    picked = [c for c in full.cases if c.stop or c.id.endswith(("-00", "-01"))]
    picked += [c for c in full.cases if c.id in ("ctx-fill-c-sampled", "long-code-greedy")]
    corpus = dataclasses.replace(full, cases=tuple(picked))
    # One thread each: two replicas share this host's cores without spin-wait contention (a
    # host-resource choice, equal on both sides; not one of the determinism settings).
    args = [*load_settings("llamacpp").start_args, "--threads", "1"]
    with llama_server(*args) as url_a, llama_server(*args) as url_b:

        async def go() -> RunResult:
            model = "gemma-3-270m-q4_k_m"
            a = LlamaCppAdapter("real-a", url_a, model_ref=model, ctx_max=2048, cache_prompt=False)
            b = LlamaCppAdapter("real-b", url_b, model_ref=model, ctx_max=2048, cache_prompt=False)
            try:
                return await run_direct(corpus, Replica(a, "det-v2"), Replica(b, "det-v2"))
            finally:
                await a.close()
                await b.close()

        run = asyncio.run(go())
    report = write_reports(run, tmp_path)
    print(f"determinism real engine (direct): {len(corpus)} cases x2 in {run.wall_s:.1f}s")
    diverged = [c for c in report["cases"] if c["status"] != "equal"]
    assert not diverged, json.dumps(diverged[:3], ensure_ascii=False, indent=1)
    assert report["summary"]["equal"] == len(corpus) >= 12 and report["settings_confirmed"]
    assert all(c["compared_by"] == "token_id" for c in report["cases"])
    stopped = [c for c in report["cases"] if c["id"] == "stop-greedy-00"]
    assert stopped and stopped[0]["tokens"] < 32  # the stop sequence ended it early


class _FakeOrch:
    """Answers like an orchestrator that ignores the pin (places the task elsewhere)."""

    def __init__(self, placed_on: str) -> None:
        self.placed_on = placed_on

    def submit(self, body):
        import httpx

        return httpx.Response(202, json={"task_id": body["task_id"]})

    def stream(self, task_id, **_kw):
        from llama_orch.harness.client import SseEvent

        events = [
            SseEvent("started", {"queue_position": 0, "predicted_start_ms": 0}, None),
            SseEvent("metrics", {"replica_id": self.placed_on} if self.placed_on else {}, None),
            SseEvent("token", {"t": "a", "i": 0, "token_id": 5}, "0"),
            SseEvent("end", {"tokens_out": 1, "decode_ms": 1, "finish_reason": "length"}, None),
        ]
        return None, events


def test_a_target_that_ignores_the_pin_gives_an_error_not_a_comparison() -> None:
    from llama_orch.determinism_suite.pinned import collect_pinned, task_body

    case = load_corpus().cases[0]
    rs = {"engine": "llamacpp", "slo": {"model_ref": "repo:m/x"}}
    body = task_body(case, rs, "pool-r0", 2048)
    honoured = collect_pinned(_FakeOrch("pool-r0"), body)
    assert honoured.error is None and honoured.ids == [5] and honoured.finish_reason == "length"
    ignored = collect_pinned(_FakeOrch("pool-r1"), body)
    assert ignored.invalid == "pin ignored: the task ran on pool-r1, not pool-r0"
    result = compare(case, honoured, ignored, True)  # tokens alike, but no valid comparison
    assert result.status == "error" and result.note == ignored.invalid
    assert compare(case, honoured, honoured, True).status == "equal"
    silent = collect_pinned(_FakeOrch(None), body)  # never says where the task ran
    assert "never said where the task ran" in silent.unconfirmed
    assert compare(case, silent, silent, True).status == "unverified"


@pytest.mark.req("OC-TEST-7001")
def test_concurrency_per_side_is_drawn_from_the_order_seed_and_reported() -> None:
    """With --max-in-flight N each side runs at its own level in 1..N (repeatable from the
    order seed); more requests in flight on single-slot replicas still compare equal."""
    cfg = SimConfig("llamacpp", slots=1)
    with running_sim(cfg) as (url_a, _), running_sim(cfg) as (url_b, _):
        runs = [_run(load_corpus(), url_a, url_b, max_in_flight=4, order_seed=s) for s in (3, 3)]
    assert runs[0].in_flight == runs[1].in_flight == (2, 3)  # same seed, same schedule
    report = build_report(runs[0])
    assert report["in_flight"] == [2, 3] and report["summary"]["passed"]
