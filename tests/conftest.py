"""Test-session setup shared by every test module.

Hypothesis budgets: the `default` profile keeps `make test` fast; `thorough` is the large
budget, chosen with `pytest --hypothesis-profile=thorough` (Hypothesis's own option) or
`LLORCH_HYPOTHESIS_PROFILE=thorough`, e.g. `make test-thorough`.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("default", max_examples=50, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("LLORCH_HYPOTHESIS_PROFILE", "default"))
