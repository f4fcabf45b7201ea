"""Turn the Markdown specs into `requirements/*.yaml`.

The syntax is documented at the top of `specs/README.md`. Public entry points:
`extract(specs_dir)` parses every spec and cross-checks IDs; `render(...)` gives the YAML
text per output file; `links.check_links(...)` validates relative links and anchors.
"""

from llama_orch.spec_extract.errors import SpecError, SpecIssue
from llama_orch.spec_extract.extract import Extraction, extract, plan_outputs
from llama_orch.spec_extract.model import Requirement

__all__ = [
    "Extraction",
    "Requirement",
    "SpecError",
    "SpecIssue",
    "extract",
    "plan_outputs",
]
