"""Hypothesis budgets for the property tests: small by default, large on request.

Why a module and not conftest.py: conftest is shared; test modules import this first. Select
the large budget with LLORCH_HYPOTHESIS_PROFILE=thorough.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("default", max_examples=50, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("LLORCH_HYPOTHESIS_PROFILE", "default"))


def heavy() -> settings:
    """Settings for tests whose single example is expensive (thousands of scheduler calls):
    a tenth of the active profile's budget, at least 5 examples."""
    return settings(max_examples=max(5, settings.default.max_examples // 10))
