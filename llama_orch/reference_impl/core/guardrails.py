"""Static admission checks and the refusal builders (OC-CORE-1020, OC-CORE-1021, ORCH-3014/3015).

Token rule: prompt_tokens + max_tokens must fit the task's own `ctx` (specs/10 section 4) and,
when the pool sets `max_tokens_budget`, that budget too; `ctx` itself must not exceed the
pool's `ctx_max`. Both refusals are 400 INVALID_PARAMS with `field` naming what to change.
"""

from __future__ import annotations

from .types import ErrorCode, PoolSpec, Rejected, TaskSpec


def invalid(message: str, field: str | None) -> Rejected:
    return Rejected(ErrorCode.INVALID_PARAMS, message, 400, field=field)


def check_task(task: TaskSpec, pool: PoolSpec) -> Rejected | None:
    """The first static reason to refuse `task` on `pool`, or None."""
    if task.ctx <= 0:
        return invalid("ctx must be positive", "ctx")
    if task.ctx > pool.ctx_max:
        return invalid(f"ctx {task.ctx} exceeds the model's ctx_max {pool.ctx_max}", "ctx")
    if task.prompt_tokens < 0:
        return invalid("prompt_tokens must not be negative", "prompt")
    if task.max_tokens < 0:
        return invalid("max_tokens must not be negative", "max_tokens")
    if task.deadline_ms is not None and task.deadline_ms < 0:
        return invalid("deadline_ms must not be negative", "deadline_ms")
    if task.expected_tokens is not None and task.expected_tokens < 0:
        return invalid("expected_tokens must not be negative", "expected_tokens")
    need = task.prompt_tokens + task.max_tokens
    if need > task.ctx:
        return invalid(
            f"prompt tokens {task.prompt_tokens} + max_tokens {task.max_tokens} exceed ctx "
            f"{task.ctx}",
            "max_tokens",
        )
    budget = pool.max_tokens_budget
    if budget is not None and need > budget:
        return invalid(
            f"prompt tokens + max_tokens = {need} exceed the pool's token budget {budget}",
            "max_tokens",
        )
    return None


def too_busy(
    code: ErrorCode, message: str, policy: str, retry_after_ms: int, retriable: bool = True
) -> Rejected:
    """A 429 with the backpressure fields the API turns into headers (OC-CTRL-2011)."""
    return Rejected(
        code,
        message,
        429,
        policy_label=policy,
        retry_after_ms=max(1, retry_after_ms),
        retriable=retriable,
    )


def unavailable(code: ErrorCode, message: str, retry_after_ms: int) -> Rejected:
    """A retriable 503 (POOL_UNREADY or POOL_UNAVAILABLE)."""
    return Rejected(code, message, 503, retry_after_ms=retry_after_ms, retriable=True)
