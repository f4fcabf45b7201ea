"""Per-tenant quotas, black-box: a rate limit with a burst bucket, and a concurrency cap
(ORCH-3006, ORCH-3077).

Both use the second tenant's key (`--tenant-key-env`) and look for the replica set whose
engine claims the feature. The two limits are told apart by what lifts them: a rate limit
lifts with time (waiting the advised `retry_after_ms` is enough), a concurrency cap only when
one of the tenant's tasks ends (waiting is not enough, a cancel is). Each check cancels what
it admitted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx

from llama_orch.harness.client import OrchClient, task_body
from llama_orch.harness.discovery import Group
from llama_orch.harness.outcomes import precondition
from llama_orch.harness.registry import Need, check
from llama_orch.harness.sched_probe import groups_claiming

BURST_BOUND = 20  # submissions before a rate limit must have shown
CAP_BOUND = 12  # concurrent tasks before a concurrency cap must have shown
QUICK = "[[sim tokens=1]] rate"
HOLD = "[[sim tokens=1 hold_ms=30000]] cap"
MAX_WAIT_MS = 5_000  # the longest advised retry the checks wait out


@dataclass
class Probe:
    """The tenant's submissions to one replica set and what came back."""

    orch: OrchClient
    tenant: OrchClient
    group: Group
    admitted: list[str] = field(default_factory=list)

    def submit(self, prompt: str) -> httpx.Response:
        body = task_body(
            engine=self.group.engine,
            model_ref=self.group.model_ref,
            prompt=prompt,
            deadline_ms=self.orch.timeouts.deadline_ms,
        )
        resp = self.tenant.submit(body)
        if resp.status_code == 202:
            self.admitted.append(body["task_id"])
        return resp

    def until_refused(self, prompt: str, bound: int) -> httpx.Response | None:
        for _ in range(bound):
            resp = self.submit(prompt)
            if resp.status_code != 202:
                return resp
        return None

    def close(self) -> None:
        for task_id in self.admitted:
            self.orch.cancel(task_id)


def _retry_ms(resp: httpx.Response) -> int:
    body = resp.json() if resp.content else {}
    assert resp.status_code == 429, f"a quota refusal must be 429, got {resp.status_code}"
    assert body.get("code") == "ADMISSION_REJECT", f"a quota refusal is ADMISSION_REJECT: {body}"
    assert body.get("retriable") is True, f"a quota refusal is retriable: {body}"
    retry = body.get("retry_after_ms")
    assert isinstance(retry, int) and retry > 0, f"a quota refusal advises retry_after_ms: {body}"
    return retry


def _tenant(target) -> OrchClient:
    return OrchClient.for_target(target, key=target.tenant_key)


@check("ORCH-3006", "ORCH-3077", features=["rate_limits"], needs=[Need.TENANT_KEY, Need.MODEL_REF])
def test_a_tenants_rate_limit_allows_a_burst_then_refills(orch, target) -> None:
    """Back-to-back tasks get through up to the burst; then 429 until the bucket refills."""
    groups = groups_claiming(target, "rate_limits")
    precondition(groups, "no replica set's engine claims rate_limits")
    tenant = _tenant(target)
    try:
        for group in groups:
            probe = Probe(orch, tenant, group)
            try:
                refused = probe.until_refused(QUICK, BURST_BOUND)
                if refused is None:
                    continue  # no limit for this tenant here
                orch.exchanges.extend(tenant.exchanges[-1:])
                burst = len(probe.admitted)
                retry = _retry_ms(refused)
                precondition(retry <= MAX_WAIT_MS, f"advised retry of {retry} ms is too long")
                time.sleep(retry / 1000 + 0.05)
                again = probe.submit(QUICK)
                assert again.status_code == 202, (
                    f"after the advised {retry} ms a token must have refilled: {again.text[:300]}"
                )
                right_after = probe.submit(QUICK)
                orch.exchanges.extend(tenant.exchanges[-2:])
                assert right_after.status_code == 429, (
                    f"a bucket refilled by one token admits one task, not a burst (burst was "
                    f"{burst}): {right_after.status_code}"
                )
                assert burst >= 1, "no task was admitted before the limit"
                return
            finally:
                probe.close()
        precondition(False, f"no replica set rate-limited the tenant within {BURST_BOUND} tasks")
    finally:
        tenant.close()


@check("ORCH-3077", features=["quotas"], needs=[Need.TENANT_KEY, Need.MODEL_REF])
def test_a_tenants_concurrency_cap_lifts_only_when_a_task_ends(orch, target) -> None:
    """At max_concurrent a new task is refused until one of the tenant's tasks ends."""
    groups = groups_claiming(target, "quotas")
    precondition(groups, "no replica set's engine claims quotas")
    tenant = _tenant(target)
    try:
        for group in groups:
            probe = Probe(orch, tenant, group)
            try:
                refused = probe.until_refused(HOLD, CAP_BOUND)
                if refused is None or not probe.admitted:
                    continue
                retry = _retry_ms(refused)
                time.sleep(min(retry, MAX_WAIT_MS) / 1000 + 0.05)
                waited = probe.submit(HOLD)
                if waited.status_code == 202:
                    continue  # waiting lifted it: a rate limit, not a concurrency cap
                orch.cancel(probe.admitted[0])
                freed = probe.submit(HOLD)
                orch.exchanges.extend(tenant.exchanges[-3:])
                assert freed.status_code == 202, (
                    f"with one of its {len(probe.admitted)} tasks ended the tenant is below "
                    f"its cap again: {freed.status_code} {freed.text[:300]}"
                )
                return
            finally:
                probe.close()
        precondition(False, f"no replica set capped the tenant's concurrency within {CAP_BOUND}")
    finally:
        tenant.close()
