"""Where the project's data lives: in the installed package, or in the checkout.

A built wheel carries the data folders (features, requirements, contracts, examples and the
metrics lint) under `llama_orch/_data/`; an editable install or a plain checkout reads them from
the repository root. Every module finds data through `data_path`, never through `__file__`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

# The folders a built wheel carries under `llama_orch/_data/` (setup.py copies them).
DATA_DIRS = ("features", "requirements", "contracts", "examples", "ci")
PACKAGE_DIR = Path(str(files("llama_orch")))
CHECKOUT = PACKAGE_DIR.parent


class DataNotFoundError(FileNotFoundError):
    """A data folder is in neither the installed package nor a checkout."""


def data_path(*parts: str) -> Path:
    """The path of a shipped data file or folder, e.g. `data_path("features")`."""
    if not parts or parts[0] not in DATA_DIRS:
        raise ValueError(f"not a shipped data folder: {'/'.join(parts)!r}; one of {DATA_DIRS}")
    for base in (PACKAGE_DIR / "_data", CHECKOUT):
        path = base.joinpath(*parts)
        if path.exists():
            return path
    raise DataNotFoundError(
        f"{'/'.join(parts)} is neither in the installed package ({PACKAGE_DIR / '_data'}) "
        f"nor in a checkout ({CHECKOUT}); reinstall llama-orch"
    )


def checkout_root() -> Path | None:
    """The repository checkout this package runs from, if any (specs live only there)."""
    return (
        CHECKOUT
        if (CHECKOUT / "specs").is_dir() and (CHECKOUT / "pyproject.toml").exists()
        else None
    )
