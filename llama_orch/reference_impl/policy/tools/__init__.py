"""Mediated tools of the policy host: `fetch` and `search` under the operator's policy."""

from llama_orch.reference_impl.policy.tools.mediated import MediatedTools
from llama_orch.reference_impl.policy.tools.redact import Redactor

__all__ = ["MediatedTools", "Redactor"]
