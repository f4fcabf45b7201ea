"""The extractor: fixture specs, every hard error, and the committed requirements/."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from llama_orch.cli.main import main
from llama_orch.spec_extract import SpecError, extract

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "spec_extract"


def _copy(name: str, tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES / name, tmp_path / name)
    return tmp_path / name


def _run(*args: str):
    return CliRunner().invoke(main, ["spec", "extract", *args], catch_exceptions=False)


@pytest.mark.req("OC-HARNESS-8501")
def test_valid_fixture_extracts_ids_levels_attributes(tmp_path: Path) -> None:
    root = _copy("valid", tmp_path)
    reqs = {r.id: r for r in extract(root / "specs", root).requirements}
    assert list(reqs) == ["OC-CORE-1001", "OC-CORE-1002", "ORCH-2001"]
    first = reqs["OC-CORE-1001"]
    assert first.level == "must"  # MUST beats the SHOULD in the same sentence
    assert first.text == (
        "A pool MUST keep one bounded FIFO queue per priority class, and SHOULD say so in "
        "its health."
    )
    assert (first.section, first.anchor) == ("1. Queues", "specs/10-demo.md#1-queues")
    assert (first.verify, first.profile) == ("black-box", "core")
    assert reqs["OC-CORE-1002"].level == "should"
    manual = reqs["ORCH-2001"]
    assert manual.level == "may"
    assert manual.anchor == "specs/10-demo.md#2-the-started-event"
    assert manual.reason == "client-side behaviour, not visible server-side"


@pytest.mark.req("OC-HARNESS-8501")
def test_second_run_is_byte_identical(tmp_path: Path) -> None:
    root = _copy("valid", tmp_path)
    result = _run("--root", str(root))
    assert result.exit_code == 0, result.output
    out = root / "requirements" / "10-demo.yaml"
    first = out.read_bytes()
    assert _run("--root", str(root)).exit_code == 0
    assert out.read_bytes() == first
    doc = YAML(typ="safe").load(first)
    assert [r["id"] for r in doc["requirements"]] == ["OC-CORE-1001", "OC-CORE-1002", "ORCH-2001"]
    assert doc["requirements"][2]["verify_reason"].startswith("client-side")
    assert _run("--root", str(root), "--check").exit_code == 0


@pytest.mark.req("OC-HARNESS-8502")
def test_check_reports_edited_text_as_diff(tmp_path: Path) -> None:
    root = _copy("valid", tmp_path)
    assert _run("--root", str(root)).exit_code == 0
    spec = root / "specs" / "10-demo.md"
    spec.write_text(spec.read_text().replace("bounded FIFO", "bounded LIFO"))
    result = _run("--root", str(root), "--check")
    assert result.exit_code == 1
    assert "-    text: A pool MUST keep one bounded FIFO" in result.output
    assert "+    text: A pool MUST keep one bounded LIFO" in result.output


@pytest.mark.req("OC-HARNESS-8502")
def test_check_reports_orphaned_yaml(tmp_path: Path) -> None:
    root = _copy("valid", tmp_path)
    assert _run("--root", str(root)).exit_code == 0
    (root / "requirements" / "99-gone.yaml").write_text("requirements: []\n")
    result = _run("--root", str(root), "--check")
    assert result.exit_code == 1
    assert "99-gone.yaml" in result.output
    assert _run("--root", str(root)).exit_code == 0
    assert not (root / "requirements" / "99-gone.yaml").exists()


@pytest.mark.req("OC-HARNESS-8503")
@pytest.mark.parametrize(
    ("fixture", "line", "reason"),
    [
        ("duplicate_id", 3, "duplicate ID OC-CORE-1001 (first defined at specs/10-demo.md:7)"),
        ("no_keyword", 3, "OC-CTRL-2001 has no RFC-2119 keyword (MUST/SHOULD/MAY)"),
        ("malformed_id", 3, "malformed ID 'OC-CTRL-201'"),
        ("missing_verify", 4, "OC-CTRL-2001: missing 'verify'"),
        ("missing_profile", 4, "OC-CTRL-2001: missing 'profile'"),
        ("unknown_ref", 3, "reference to unknown requirement ORCH-9999"),
        ("manual_no_reason", 4, "OC-CTRL-2001: verify: manual needs a quoted 'reason'"),
    ],
)
def test_hard_errors_name_file_line_and_reason(
    tmp_path: Path, fixture: str, line: int, reason: str
) -> None:
    root = _copy(fixture, tmp_path)
    with pytest.raises(SpecError) as info:
        extract(root / "specs", root)
    assert [str(i) for i in info.value.issues] == [f"specs/20-other.md:{line}: {reason}"]
    result = _run("--root", str(root))
    assert result.exit_code == 2
    assert f"error: specs/20-other.md:{line}: {reason}" in result.output
    assert not (root / "requirements").exists(), "nothing is written when a spec is broken"


@pytest.mark.req("OC-HARNESS-8503")
@pytest.mark.parametrize(
    ("attrs", "reason"),
    [
        ("{verify: grey-box, profile: core}", "verify must be one of"),
        ("{verify: black-box, profile: gold}", "profile must be one of"),
        ("{verify: black-box, profile: core, owner: me}", "unknown attribute(s) owner"),
        ("{verify: black-box, profile: [core}", "not a YAML flow map"),
    ],
)
def test_bad_attribute_values_are_rejected(tmp_path: Path, attrs: str, reason: str) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "10-x.md").write_text(
        f"# X\n\n- **OC-CORE-1001**: It MUST work.\n  {attrs}\n"
    )
    with pytest.raises(SpecError) as info:
        extract(tmp_path / "specs", tmp_path)
    (issue,) = info.value.issues
    assert issue.line == 4 and reason in issue.reason


@pytest.mark.req("OC-HARNESS-8502")
def test_committed_requirements_are_current() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llama_orch.cli", "spec", "extract", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# Per-family counts from the requirements catalog (brief §7); OC-HARNESS is ours.
CATALOG_COUNTS = {
    "ORCH": 111,
    "OC-CORE": 19,
    "OC-CTRL": 23,
    "OC-POOL": 9,
    "OC-ADAPT": 11,
    "OC-POLICY": 14,
    "OC-CONFIG": 3,
    "OC-TEST": 3,
    "OC-METRICS": 4,
}


@pytest.mark.req("OC-HARNESS-8501")
def test_requirement_counts_match_the_catalog() -> None:
    from llama_orch.spec_extract.render import family_of

    counts: dict[str, int] = {}
    for req in extract(ROOT / "specs", ROOT).requirements:
        counts[family_of(req.id)] = counts.get(family_of(req.id), 0) + 1
    harness = counts.pop("OC-HARNESS")
    assert counts == CATALOG_COUNTS
    assert sum(counts.values()) == 197 and harness > 0
