"""Turn the Markdown specs into `requirements/*.yaml`.

The syntax is documented at the top of `specs/README.md`. Public entry points:
`extract(specs_dir)` parses every spec and cross-checks IDs; `plan_outputs(...)` gives the text
of every generated file (the YAML per spec, the README counts, the divergence table);
`links.check_links(...)` validates relative links and anchors.
"""

from llama_orch.spec_extract.errors import SpecError, SpecIssue
from llama_orch.spec_extract.extract import Extraction, extract, plan_outputs
from llama_orch.spec_extract.model import Divergence, Requirement

__all__ = [
    "Divergence",
    "Extraction",
    "Requirement",
    "SpecError",
    "SpecIssue",
    "extract",
    "plan_outputs",
]
