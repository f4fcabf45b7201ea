"""The check inventory behind `llorch spec coverage`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from llama_orch.cli.main import main
from llama_orch.harness.requirements import RequirementsError, load_requirements
from llama_orch.harness.traceability import inventory

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "spec_extract" / "valid"

TEST_MODULE = """
import pytest

pytestmark = [pytest.mark.req("ORCH-2001")]


@pytest.mark.req("OC-CORE-1001", "OC-CORE-1001")
def test_queue():
    assert True


@pytest.mark.req("OC-CORE-1002")
class TestFull:
    def test_drop(self):
        assert True

    def helper(self):
        pass
"""

FEATURE = """@OC-CORE-1001
Feature: Queues
  @ORCH-2001 @smoke
  Scenario: A full queue rejects
    Given a pool

  Scenario: Another
    Given a pool
"""


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    shutil.copytree(FIXTURE, root)
    (root / "tests").mkdir()
    (root / "tests" / "test_demo.py").write_text(TEST_MODULE)
    (root / "features").mkdir()
    (root / "features" / "queue.feature").write_text(FEATURE)
    return root


@pytest.mark.req("OC-HARNESS-8504")
def test_inventory_reads_markers_and_tags(tmp_path: Path) -> None:
    found = inventory(_tree(tmp_path))
    locs = {k: [f"{c.kind}:{c.location}" for c in v] for k, v in found.items()}
    assert locs == {
        "OC-CORE-1001": [
            "bdd:features/queue.feature: A full queue rejects",
            "bdd:features/queue.feature: Another",
            "pytest:tests/test_demo.py::test_queue",
        ],
        "OC-CORE-1002": ["pytest:tests/test_demo.py::TestFull::test_drop"],
        "ORCH-2001": [
            "bdd:features/queue.feature: A full queue rejects",
            "pytest:tests/test_demo.py::TestFull::test_drop",
            "pytest:tests/test_demo.py::test_queue",
        ],
    }


@pytest.mark.req("OC-HARNESS-8504")
def test_coverage_command_reports_uncovered_and_unknown(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    runner = CliRunner()
    assert runner.invoke(main, ["spec", "extract", "--root", str(root)]).exit_code == 0
    ok = runner.invoke(main, ["spec", "coverage", "--root", str(root), "-v"])
    assert ok.exit_code == 0, ok.output
    assert "all                     3      3" in ok.output
    (root / "tests" / "test_demo.py").write_text(
        TEST_MODULE + '\n\n@pytest.mark.req("OC-CORE-1003")\ndef test_x():\n    pass\n'
    )
    (root / "features" / "queue.feature").unlink()
    bad = runner.invoke(main, ["spec", "coverage", "--root", str(root)])
    assert bad.exit_code == 1
    assert "tests/test_demo.py::test_x names unknown requirement OC-CORE-1003" in bad.output
    strict = runner.invoke(main, ["spec", "coverage", "--root", str(root), "--fail-uncovered"])
    assert strict.exit_code == 1


def test_repository_checks_name_only_known_requirements() -> None:
    result = CliRunner().invoke(main, ["spec", "coverage", "--root", str(ROOT), "--json"])
    assert result.exit_code == 0, result.output


def test_missing_requirements_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RequirementsError, match="run `llorch spec extract`"):
        load_requirements(tmp_path)
