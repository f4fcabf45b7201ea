"""SLO circuit breaker, black-box: batch work is shed while interactive first tokens keep
missing their SLO, and admitted again once they meet it (ORCH-3040).

The SLO is the interactive first-token target of the umbrella spec (p95 at most 900 ms,
ORCH-3041). Violations are provoked with `ttft_ms` directives (a slow prefill, specs/80 §6):
one wave of interactive tasks on every slot, each 1100 ms to its first token. Then a batch
task must be refused (429, retriable) while an interactive one is still admitted; fast
interactive tasks follow until batch work is admitted again, within RECOVER_BOUND tasks.
"""

from __future__ import annotations

from llama_orch.harness.outcomes import precondition
from llama_orch.harness.registry import Need, check
from llama_orch.harness.sched_probe import pick_group
from llama_orch.harness.steps.world import World, scenario_world

SLO_MS = 900
SLOW = "[[sim tokens=1 ttft_ms=1100]] slow first token"
FAST = "[[sim tokens=1]] fast first token"
PROBE = "[[sim tokens=1]] probe"
MIN_WAVE = 4  # slow tasks at least, even on a set with fewer slots (they queue: slower yet)
RECOVER_BOUND = 16


def _batch_admitted(world: World) -> tuple[bool, object]:
    body = world.new_task(PROBE, priority="batch", max_tokens=1)
    resp = world.submit(body)
    return resp.status_code == 202, resp


def _run(world: World, prompt: str, n: int) -> None:
    watches = []
    for k in range(n):
        body = world.new_task(prompt, priority="interactive", max_tokens=1)
        world.submit_ok(body, setup=True)
        watches.append(world.watch(f"{prompt[:12]}-{k}-{len(world.watches)}", body["task_id"]))
    within = world.orch.timeouts.stream_s
    precondition(all(w.wait_done(within) for w in watches), "interactive tasks did not end")


@check("ORCH-3040", features=["slo_breaker"], needs=[Need.MODEL_REF])
def test_batch_work_is_shed_while_the_first_token_slo_is_missed(orch, target) -> None:
    """While interactive first tokens miss 900 ms, batch tasks get 429; then they return."""
    group = pick_group(target, "slo_breaker")
    with scenario_world(orch, target, {}) as world:
        world.group = group
        ok, resp = _batch_admitted(world)
        if not ok:  # open from earlier load: let fast interactive work close it first
            _run(world, FAST, RECOVER_BOUND)
            ok, resp = _batch_admitted(world)
        precondition(ok, f"batch work is refused before any SLO violation: {resp.text[:200]}")
        _run(world, SLOW, max(MIN_WAVE, world.wait_idle(group)))
        shed, refused = _batch_admitted(world)
        body = refused.json() if refused.content else {}
        assert not shed, "batch work was still admitted while every first token missed the SLO"
        assert refused.status_code == 429 and body.get("retriable") is True, (
            f"shed work is refused with a retriable 429: {refused.status_code} {body}"
        )
        inter = world.new_task(PROBE, priority="interactive", max_tokens=1)
        assert world.submit(inter).status_code == 202, "the SLO class itself must not be shed"
        for _n in range(RECOVER_BOUND):
            _run(world, FAST, 1)
            back, _ = _batch_admitted(world)
            if back:
                return
        raise AssertionError(
            f"batch work was still shed after {RECOVER_BOUND} interactive tasks met the SLO"
        )
