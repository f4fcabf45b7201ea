"""Ship the data folders in the wheel under `llama_orch/_data/` (see llama_orch/resources.py).

pyproject.toml holds all metadata; this file only teaches `build_py` to copy the repository's
data folders (features, requirements, contracts, examples, the metrics lint) into the package,
so that an installed harness finds them through `importlib.resources` from any directory.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# (source folder, glob patterns to ship); mirrors llama_orch.resources.DATA_DIRS.
DATA = {
    "features": ("**/*.feature",),
    "requirements": ("*.yaml",),
    "contracts": ("**/*.yaml", "**/*.json"),
    "examples": ("*.yaml", "policies/*/plugin.*", "policies/*/*.md", "policies/*/snapshots/*.json"),
    "ci": ("metrics.lint.json",),
}


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the checkout itself
            return
        target = Path(self.build_lib) / "llama_orch" / "_data"
        for folder, patterns in DATA.items():
            for pattern in patterns:
                for src in sorted((ROOT / folder).glob(pattern)):
                    dest = target / folder / src.relative_to(ROOT / folder)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dest)


setup(cmdclass={"build_py": BuildWithData})
