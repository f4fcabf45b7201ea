"""The harness against deliberately broken targets: each fault fails the right requirements.

Each mode of `tests/fixtures/faulty/proxy.py` puts one fault in front of a fresh reference
orchestrator; the whole check suite then runs against the proxy's URL, exactly as another
project's CI would run it (`pytest --pyargs harness.checks --target URL`, key in the
environment). The requirements with a failed check must be a non-empty subset of the ones the
fault breaks, and must include one of its primary IDs; the `passthrough` proxy is the control
run, where nothing may fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from llama_orch.harness.client import task_body
from llama_orch.harness.target import embedded_reference
from tests.fixtures.faulty.proxy import FaultyProxy, running_proxy

ROOT = Path(__file__).resolve().parent.parent
KEY_ENV = "LLORCH_FAULTY_TARGET_KEY"
RUN_TIMEOUT_S = 600

# mode -> (primary IDs, at least one of which must fail; further IDs that may also fail)
FAULTS: dict[str, tuple[set[str], set[str]]] = {
    "no-retry-after": ({"ORCH-2007", "OC-CTRL-2011"}, set()),
    "token-after-cancel": (
        {"ORCH-3026", "OC-CTRL-2012"},
        {"ORCH-2003", "ORCH-3017", "OC-CORE-1005"},
    ),
    "wrong-sse-order": (
        {"ORCH-2002", "OC-CTRL-2020", "OC-CTRL-2022"},
        {"ORCH-3029", "OC-CTRL-2021", "OC-CTRL-2050"},
    ),
    "no-auth": ({"ORCH-3035", "OC-CTRL-2040"}, {"ORCH-3098", "OC-CTRL-2066"}),
    "no-correlation": ({"ORCH-2009"}, {"OC-CTRL-2052"}),
    "metric-labels": ({"OC-METRICS-7101"}, set()),
}


@dataclass(frozen=True)
class SuiteRun:
    mode: str
    results: list[dict]
    elapsed_s: float
    tail: str  # end of the suite's console output
    key_in_output: bool  # the target's API key appeared in the console output


def _run_suite(mode: str, report_dir: Path) -> SuiteRun:
    """Reference + proxy in `mode`; the check suite in a subprocess; its results.json."""
    with embedded_reference() as (upstream, key, _), running_proxy(upstream, mode, key) as url:
        env = {**os.environ, KEY_ENV: key}
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--pyargs",
            "llama_orch.harness.checks",
            "--target",
            url,
            "--api-key-env",
            KEY_ENV,
            "--report-dir",
            str(report_dir),
        ]
        started = time.monotonic()
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
        )
        elapsed = time.monotonic() - started
    output = proc.stdout + proc.stderr
    results_file = report_dir / "results.json"
    assert results_file.exists(), f"no results.json (rc {proc.returncode}):\n{output[-3000:]}"
    text = results_file.read_text(encoding="utf-8")
    assert key not in text, "the API key leaked into results.json"
    tail = output[-3000:].replace(key, "[KEY]")
    return SuiteRun(mode, json.loads(text), elapsed, tail, key in output)


@pytest.fixture(scope="module", params=["passthrough", *FAULTS])
def faulty_run(request, tmp_path_factory) -> SuiteRun:
    mode = request.param
    run = _run_suite(mode, tmp_path_factory.mktemp(f"faulty-{mode}"))
    print(
        f"\n[faulty target] {mode}: suite ran in {run.elapsed_s:.1f} s, {len(run.results)} checks"
    )
    return run


def _failed_ids(results: list[dict]) -> dict[str, list[str]]:
    """Requirement ID -> ids of the failed checks naming it."""
    out: dict[str, list[str]] = {}
    for r in results:
        if r["outcome"] == "failed":
            for req in r["requirement_ids"]:
                out.setdefault(req, []).append(r["id"])
    return out


@pytest.mark.slow
@pytest.mark.req("OC-HARNESS-8003", "OC-HARNESS-8103")
def test_fault_fails_exactly_its_requirements(faulty_run: SuiteRun) -> None:
    failed = _failed_ids(faulty_run.results)
    mode = faulty_run.mode
    if mode == "passthrough":
        assert not failed, f"the fault-free proxy failed checks: {failed}\n{faulty_run.tail}"
        return
    primary, secondary = FAULTS[mode]
    named = {req for r in faulty_run.results for req in r["requirement_ids"]}
    if not primary & named:
        pytest.skip(f"no check names {sorted(primary)} yet, so `{mode}` cannot be caught")
    unrelated = {req: checks for req, checks in failed.items() if req not in primary | secondary}
    assert not unrelated, f"{mode}: checks of unrelated requirements failed: {unrelated}"
    assert primary & failed.keys(), (
        f"{mode}: no check of {sorted(primary)} failed; failed: {sorted(failed)}\n{faulty_run.tail}"
    )


@pytest.mark.slow
@pytest.mark.req("OC-HARNESS-8308")
def test_failed_checks_carry_reproducible_evidence(faulty_run: SuiteRun) -> None:
    failed = [r for r in faulty_run.results if r["outcome"] == "failed"]
    if faulty_run.mode == "passthrough":
        assert not failed, "the control run (no fault) must not fail any check"
        return
    assert failed, f"{faulty_run.mode}: the fault was not caught by any check"
    for r in failed:
        evidence = r["evidence"]
        missing = [k for k in ("message", "request", "response", "curl") if not evidence.get(k)]
        assert not missing, f"{r['id']} failed without {missing} in its evidence"
        assert evidence["curl"].startswith("curl "), evidence["curl"]


@pytest.mark.slow
@pytest.mark.req("OC-HARNESS-8003")
def test_the_api_key_stays_out_of_the_console_output(faulty_run: SuiteRun) -> None:
    """Failing checks print tracebacks; not one of them may show the target's key."""
    assert not faulty_run.key_in_output, (
        f"{faulty_run.mode}: the API key appeared in the suite's console output "
        f"(shown here as [KEY]):\n{faulty_run.tail}"
    )


# -- the proxy itself (fast): each mode breaks its behaviour and nothing else ----------------


@pytest.fixture(scope="module")
def reference():
    with embedded_reference() as (url, key, _):
        yield url, key


def _submit(client: httpx.Client, prompt: str = "[[sim tokens=3]] proxy") -> str:
    body = task_body(engine="llamacpp", model_ref="repo:mock/tiny-llama", prompt=prompt)
    assert client.post("/v1/tasks", json=body).status_code == 202
    return body["task_id"]


def _events(text: str) -> list[str]:
    return [line[7:] for line in text.splitlines() if line.startswith("event: ")]


@contextlib.contextmanager
def _proxied(reference, mode: str):
    upstream, key = reference
    with running_proxy(upstream, mode, key) as url:
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            yield client


def test_passthrough_proxy_changes_nothing(reference) -> None:
    with _proxied(reference, "passthrough") as client:
        resp = client.get(f"/v1/tasks/{_submit(client)}/stream")
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = _events(resp.text)
        assert events[0] == "started" and events[-1] == "end" and events.count("token") == 3
        assert resp.headers.get("x-correlation-id")
        assert client.get("/v1/capabilities", headers={"Authorization": ""}).status_code == 401


def test_wrong_sse_order_sends_started_after_the_first_token(reference) -> None:
    with _proxied(reference, "wrong-sse-order") as client:
        events = _events(client.get(f"/v1/tasks/{_submit(client)}/stream").text)
        assert events.index("token") < events.index("started"), events
        assert events.count("started") == 1 and events[-1] == "end"


def test_token_after_cancel_puts_one_token_after_the_cancel(reference) -> None:
    with _proxied(reference, "token-after-cancel") as client:
        task = _submit(client, "[[sim tokens=40 itl_ms=25]] proxy")
        with client.stream("GET", f"/v1/tasks/{task}/stream") as stream:
            lines = stream.iter_lines()
            assert next(line for line in lines if line == "event: token")
            assert client.post(f"/v1/tasks/{task}/cancel").status_code == 204
            rest = _events("\n".join(lines))
        assert rest[-1] in ("end", "error") and rest[-2] == "token", rest


def test_no_auth_lets_calls_without_a_key_through(reference) -> None:
    with _proxied(reference, "no-auth") as client:
        assert client.get("/v1/capabilities", headers={"Authorization": ""}).status_code == 200
        wrong = {"Authorization": "", "X-API-Key": "not-the-key"}
        assert client.get("/v1/replicasets", headers=wrong).status_code == 200


def test_no_correlation_drops_the_header(reference) -> None:
    with _proxied(reference, "no-correlation") as client:
        resp = client.get("/v1/capabilities", headers={"X-Correlation-Id": "abc"})
        assert resp.status_code == 200 and "x-correlation-id" not in resp.headers


def test_metric_labels_renames_the_priority_label(reference) -> None:
    with _proxied(reference, "metric-labels") as client:
        _submit(client)
        lines = [
            line
            for line in client.get("/metrics").text.splitlines()
            if line.startswith("tasks_enqueued_total{")
        ]
        assert lines and all('prio="' in line and "priority=" not in line for line in lines)


def test_no_retry_after_strips_backoff_headers_from_429_only() -> None:
    proxy = FaultyProxy("http://upstream.invalid", "no-retry-after")
    backoff = {"Retry-After": "1", "X-Backoff-Ms": "1000", "X-Correlation-Id": "c"}
    full = dict(proxy._response_headers(httpx.Response(429, headers=backoff), False))
    assert full == {b"x-correlation-id": b"c"}
    other = dict(proxy._response_headers(httpx.Response(503, headers=backoff), False))
    assert b"retry-after" in other and b"x-backoff-ms" in other
