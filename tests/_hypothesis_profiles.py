"""Budget helpers for property tests; the profiles themselves are registered in conftest.py."""

from __future__ import annotations

from hypothesis import settings


def heavy() -> settings:
    """Settings for tests whose single example is expensive (thousands of scheduler calls):
    a tenth of the active profile's budget, at least 5 examples."""
    return settings(max_examples=max(5, settings.default.max_examples // 10))
