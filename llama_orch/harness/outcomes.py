"""How a check's ending becomes an outcome: passed, failed, error, or blocked by a root cause.

A check fails only when the target broke what the check judges. A check that could not set up
its situation ends as `error` (its requirements are then `unverified`, never passed). A check
that found a more basic requirement broken on its way (a stream that is not SSE, a key that
stopped working) ends as `error` "blocked by" that requirement, so one fault fails the
requirement whose text it breaks and no others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from llama_orch.harness.results import Outcome


class PreconditionError(RuntimeError):
    """The check could not set up its situation on the target: outcome `error`."""


def precondition(ok: object, message: str) -> None:
    if not ok:
        raise PreconditionError(message)


class Violation(AssertionError):
    """The target broke `requirements` (a basic rule found on the way, e.g. SSE framing).

    In a check that proves one of them it is a failure; in any other check it blocks that
    check's judgement: outcome `error`, blocked by these requirements.
    """

    def __init__(self, requirements: Sequence[str], message: str) -> None:
        self.requirements = tuple(requirements)
        super().__init__(f"{message} (breaks {', '.join(self.requirements)})")


class CheckTimeout(Exception):
    """The check ran past its ceiling (timeouts.check_s): the net under every other bound."""


class RunCeiling(Exception):
    """The whole run passed its ceiling (timeouts.run_s); the check was not started."""


@dataclass(frozen=True)
class Classified:
    outcome: Outcome
    message: str
    blocked_by: tuple[str, ...] = ()
    # A failure of some of the check's requirements only; for the others it is blocked by them.
    fails: tuple[str, ...] = ()


def _text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip(": ")[:2000]


def _broken(requirements: Sequence[str], own: Sequence[str], text: str) -> Classified:
    """A basic rule of `requirements` broken: a failure of those the check proves (and no
    others), or, when it proves none of them, an error blocked by them."""
    mine = tuple(r for r in own if r in set(requirements))
    if mine:
        return Classified(Outcome.FAILED, text, fails=mine if len(mine) < len(own) else ())
    return Classified(Outcome.ERROR, f"blocked: {text}", tuple(requirements))


def _unanswered(exc: httpx.TransportError) -> tuple[str, ...]:
    """The requirements of the operation a transport error happened on, when it is known."""
    from llama_orch.harness.rules import answering

    try:
        request = exc.request
    except RuntimeError:
        return ()
    return answering(request.method, request.url.path)


def classify(exc: BaseException, own: Sequence[str], *, in_call: bool) -> Classified:
    """The outcome of a check that raised `exc`; `own` are the requirements it proves."""
    if isinstance(exc, Violation):
        return _broken(exc.requirements, own, _text(exc))
    if isinstance(exc, PreconditionError | CheckTimeout | RunCeiling):
        return Classified(Outcome.ERROR, _text(exc))
    if isinstance(exc, httpx.TransportError) and in_call:
        # The target stopped answering, stalled mid-body or dropped the connection while the
        # check judged it: that breaks the requirement of the operation that did not answer
        # (evidence: the exchange so far); a check of something else is blocked by it.
        text = f"the target did not answer properly: {_text(exc)}"
        operation = _unanswered(exc)
        if operation:
            return _broken(operation, own, text)
        return Classified(Outcome.FAILED, text)
    if isinstance(exc, AssertionError) and in_call:
        return Classified(Outcome.FAILED, _text(exc))
    if type(exc).__name__ == "StepDefinitionNotFoundError":
        return Classified(Outcome.UNDEFINED, _text(exc))
    return Classified(Outcome.ERROR, _text(exc))
