"""Values more than one layer of the reference relies on, defined once.

Stdlib only, so every layer may import it; `core/` does not (it imports nothing outside
itself) and keeps its own domain defaults, such as the class weights, in `core.types`.
"""

from __future__ import annotations

# Context window a pool gets when its config sets no `ctx` (admission and adapters alike).
DEFAULT_CTX = 4096

# Sampler profile a pool uses when its config names none; one of the built-in profiles.
DEFAULT_SAMPLER_PROFILE = "v1"

# Tenant of operator keys, and of every caller when authentication is disabled.
DEFAULT_TENANT = "default"
