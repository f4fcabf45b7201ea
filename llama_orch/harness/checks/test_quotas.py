"""Tenant quota checks: a second tenant's concurrent jobs are capped (ORCH-3036)."""

from __future__ import annotations

from llama_orch.harness.client import OrchClient, task_body
from llama_orch.harness.outcomes import precondition
from llama_orch.harness.registry import Need, check

HOLD = "[[sim tokens=1 hold_ms=2500]] hold"
MAX_TRIES = 12


@check("ORCH-3036", needs=[Need.TENANT_KEY, Need.MODEL_REF])
def test_a_tenants_concurrent_jobs_are_capped(orch, target) -> None:
    group = target.groups()[0]
    tenant = OrchClient.for_target(target, key=target.tenant_key)

    def body(prompt: str) -> dict:
        return task_body(
            engine=group.engine,
            model_ref=group.model_ref,
            prompt=prompt,
            deadline_ms=orch.timeouts.deadline_ms,
        )

    admitted: list[str] = []
    try:
        refused = None
        for _ in range(MAX_TRIES):
            task = body(HOLD)
            resp = tenant.submit(task)
            if resp.status_code == 202:
                admitted.append(task["task_id"])
                continue
            refused = resp
            break
        precondition(
            refused is not None,
            f"no quota was reached within {MAX_TRIES} concurrent tasks of the tenant "
            "(is --tenant-key-env a key with a max_concurrent quota?)",
        )
        orch.exchanges.extend(tenant.exchanges[-1:])
        assert refused.status_code == 429, f"a quota refusal must be 429, got {refused.status_code}"
        assert refused.json().get("code") == "ADMISSION_REJECT", refused.text
        other = body("[[sim tokens=1]] other tenant")
        assert orch.submit(other).status_code == 202, "another tenant must still be admitted"
        admitted.append(other["task_id"])
    finally:
        for task_id in admitted:
            orch.cancel(task_id)
        tenant.close()
