"""The request vocabulary api/ shares with the service, one definition each in the reference.

`Priority` is the core's, `Engine` the config's; they are re-exported here so the HTTP layer
validates requests with the very enums the service and core use, and imports service/ only.
"""

from llama_orch.reference_impl.config import Engine
from llama_orch.reference_impl.core import Priority

__all__ = ["Engine", "Priority"]
