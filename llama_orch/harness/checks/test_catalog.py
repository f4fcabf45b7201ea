"""Catalog verification checks: every verification is counted and logged (ORCH-3064).

Each check registers one entry that verifies (and retires it afterwards) and one that the trust
policy refuses, and asks for the first to be verified again: three verification events, of
which at least two pass and one fails. Entries are made at run time (harness.signing).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client.parser import text_string_to_metric_families

from llama_orch.harness.checks.test_logs import _records
from llama_orch.harness.outcomes import precondition
from llama_orch.harness.registry import Kind, Need, check
from llama_orch.harness.signing import model_entry
from llama_orch.harness.steps.catalog import CATALOG, retire

METRIC = "catalog_verifications_total"


def _counts(orch) -> Counter:
    resp = orch.get("/metrics")
    precondition(resp.status_code == 200, f"GET /metrics answered {resp.status_code}")
    counts: Counter = Counter()
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            if s.name == METRIC:
                key = (s.labels.get("result"), s.labels.get("reason"), s.labels.get("engine"))
                counts[key] += s.value
    return counts


@contextmanager
def _three_verifications(orch, target) -> Iterator[tuple[str, str]]:
    """(id verified twice, id refused once); the verified entry is retired afterwards."""
    registry = target.description.catalog.registry
    authority = target.authority
    signed = model_entry(registry, signer=authority.issue())
    unsigned = model_entry(registry, signer=None)
    resp = orch.request("POST", CATALOG, json_body=signed)
    precondition(resp.status_code == 201, f"a signed entry was not registered: {resp.status_code}")
    try:
        resp = orch.request("POST", CATALOG, json_body=unsigned)
        precondition(resp.status_code == 400, f"an unsigned entry got {resp.status_code}")
        resp = orch.request("POST", f"{CATALOG}/{signed['id']}/verify")
        precondition(resp.status_code == 202, f"verify answered {resp.status_code}")
        yield signed["id"], unsigned["id"]
    finally:
        retire(orch, signed["id"])


@check("ORCH-3064", kind=Kind.METRICS, features=["catalog"], needs=[Need.CATALOG_CA])
def test_every_verification_is_counted(orch, target) -> None:
    before = _counts(orch)
    with _three_verifications(orch, target):
        after = _counts(orch)
    grown = after - before
    by_result = Counter()
    for (result, reason, engine), n in grown.items():
        assert result in ("pass", "fail"), f"{METRIC} has result {result!r}"
        assert reason and engine, f"{METRIC} series without reason or engine: {result, reason}"
        by_result[result] += n
    assert by_result["pass"] >= 2, f"two passing verifications counted {by_result['pass']}"
    assert by_result["fail"] >= 1, f"a failed verification counted {by_result['fail']}"


@check("ORCH-3064", features=["catalog"], needs=[Need.CATALOG_CA, Need.LOG])
def test_every_verification_is_logged(orch, target) -> None:
    with _three_verifications(orch, target) as (verified, refused):
        deadline = time.monotonic() + orch.timeouts.settle_s
        while True:
            records = _records(target.log_path)
            naming = {
                model_id: [r for r in records if model_id in map(str, r.values())]
                for model_id in (verified, refused)
            }
            if (len(naming[verified]) >= 2 and naming[refused]) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert len(naming[verified]) >= 2, f"{verified}: {len(naming[verified])} log records, not 2"
    assert naming[refused], f"no log record names the refused entry {refused}"
