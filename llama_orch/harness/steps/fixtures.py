"""Scenario fixtures and the step-pattern helper every step module uses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import parse
import pytest
from pytest_bdd import parsers

from llama_orch.harness.steps.world import World, scenario_world


@parse.with_pattern(r'[^"]*')
def _quoted(text: str) -> str:
    return text


@parse.with_pattern(r"[^\s,]+")
def _word(text: str) -> str:
    return text


TYPES = {"Q": _quoted, "W": _word}


def P(pattern: str) -> parsers.parse:
    """A step pattern: `{x:Q}` is text inside double quotes, `{x:W}` one token, `{n:d}` int."""
    return parsers.parse(pattern, extra_types=TYPES)


@pytest.fixture(scope="session")
def llorch_memo() -> dict[str, Any]:
    """What earlier scenarios learned about the target (e.g. which set has which policy)."""
    return {}


@pytest.fixture
def world(orch, target, llorch_memo) -> Iterator[World]:
    """One scenario's state; cancels its tasks and restores its pools at the end."""
    with scenario_world(orch, target, llorch_memo) as w:
        yield w
