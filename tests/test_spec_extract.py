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
    table = root / "CHANGELOG_SPEC.md"
    first, first_table = out.read_bytes(), table.read_bytes()
    assert _run("--root", str(root)).exit_code == 0
    assert out.read_bytes() == first
    assert table.read_bytes() == first_table
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
        (
            "malformed_divergence",
            5,
            "OC-CTRL-2001: malformed divergence line '- Ours stricter: the body also names the "
            "pool.'; expected '- Ours (stricter|looser|different): …', '- Upstream: …' or "
            "'- Source: …'",
        ),
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


@pytest.mark.req("OC-HARNESS-8501")
def test_divergence_notes_reach_the_yaml_and_the_table(tmp_path: Path) -> None:
    from llama_orch.harness.requirements import load_requirements

    root = _copy("valid", tmp_path)
    reqs = {r.id: r for r in extract(root / "specs", root).requirements}
    (note,) = reqs["OC-CORE-1002"].divergences
    assert note.kind == "stricter"
    assert note.ours == (
        "the caller gets `429` at once under `reject|drop-lru`, and never waits (see "
        "OC-CORE-1001); `MUST` in backticks is no keyword."
    )
    assert (note.upstream, note.source) == (
        "says nothing about waiting.",
        "`.specs/10-orchestrator-core.md` §1",
    )
    assert reqs["OC-CORE-1002"].level == "should", "a note never changes the level"
    assert reqs["OC-CORE-1001"].divergences == ()
    assert _run("--root", str(root)).exit_code == 0
    records = {r.id: r for r in load_requirements(root / "requirements")}
    assert records["ORCH-2001"].divergences == [
        {
            "kind": "looser",
            "ours": "retrying is left to the client.",
            "upstream": "retries should target retryable errors only.",
            "source": "`.specs/00_llama-orch.md` §3.8",
        }
    ]
    assert records["OC-CORE-1001"].divergences is None
    table = (root / "CHANGELOG_SPEC.md").read_text(encoding="utf-8")
    assert "2 notes on 2 requirements (1 stricter, 1 looser, 0 different)." in table
    rows = [ln for ln in table.splitlines() if ln.startswith("| [")]
    assert rows == [
        "| [OC-CORE-1002](specs/10-demo.md#1-queues) | stricter | the caller gets `429` at "
        "once under `reject\\|drop-lru`, and never waits (see OC-CORE-1001); `MUST` in "
        "backticks is no keyword. | says nothing about waiting. "
        "| `.specs/10-orchestrator-core.md` §1 |",
        "| [ORCH-2001](specs/10-demo.md#2-the-started-event) | looser | retrying is left to "
        "the client. | retries should target retryable errors only. "
        "| `.specs/00_llama-orch.md` §3.8 |",
    ]


@pytest.mark.req("OC-HARNESS-8502")
def test_check_reports_a_stale_divergence_table(tmp_path: Path) -> None:
    root = _copy("valid", tmp_path)
    assert _run("--root", str(root)).exit_code == 0
    spec = root / "specs" / "10-demo.md"
    spec.write_text(spec.read_text().replace("says nothing about", "is silent on"))
    result = _run("--root", str(root), "--check")
    assert result.exit_code == 1
    assert "b/CHANGELOG_SPEC.md (from specs)" in result.output
    assert "| is silent on waiting. |" in result.output
    (root / "CHANGELOG_SPEC.md").unlink()
    assert _run("--root", str(root)).exit_code == 0
    assert _run("--root", str(root), "--check").exit_code == 0


DEMO_HEAD = "# X\n\n- **OC-CORE-1001**: It MUST work.\n"
ATTRS = "  {verify: black-box, profile: core}\n"


@pytest.mark.req("OC-HARNESS-8503")
@pytest.mark.parametrize(
    ("body", "line", "reason"),
    [
        (
            ATTRS + "  - Ours (harsher): x.\n  - Upstream: y.\n  - Source: z\n",
            5,
            "divergence kind must be one of stricter, looser, different, got 'harsher'",
        ),
        (ATTRS + "  - Ours (stricter): x.\n  - Upstream: y.\n", 5, "lacks '- Source:'"),
        (
            ATTRS + "  - Ours (stricter): x.\n  - Source: z\n  - Upstream: y.\n",
            6,
            "divergence note expects '- Upstream:' here, got '- Source: z'",
        ),
        (
            ATTRS + "  - Ours (stricter): x.\n  - Upstream:\n  - Source: z\n",
            6,
            "divergence field '- Upstream:' is empty",
        ),
        (
            ATTRS + "  - Ours (stricter): x.\n  - Upstream: it\n    MUST wait.\n  - Source: z\n",
            6,
            "carry no RFC-2119 keyword; found 'MUST'",
        ),
        (
            "  - Ours (stricter): x.\n" + ATTRS,
            4,
            "a divergence note goes after the attribute line",
        ),
        (
            ATTRS + "  - Ours (stricter): x.\n  - Upstream: y.\n  - Source: z\n  stray text\n",
            8,
            "text after divergence note",
        ),
        (ATTRS + "  stray text\n", 5, "text after attributes"),
    ],
)
def test_bad_divergence_notes_are_rejected(
    tmp_path: Path, body: str, line: int, reason: str
) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "10-x.md").write_text(DEMO_HEAD + body)
    with pytest.raises(SpecError) as info:
        extract(tmp_path / "specs", tmp_path)
    (issue,) = info.value.issues
    assert (issue.path, issue.line) == ("specs/10-x.md", line)
    assert issue.reason.startswith("OC-CORE-1001: ") and reason in issue.reason


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
# Requirements the project added beyond the upstream catalog (each one a deliberate addition).
PROJECT_ADDITIONS = {"OC-CTRL-2024"}  # the SSE resume rule, made checkable (issue 10)


@pytest.mark.req("OC-HARNESS-8501")
def test_requirement_counts_match_the_catalog() -> None:
    from llama_orch.spec_extract.render import family_of

    counts: dict[str, int] = {}
    for req in extract(ROOT / "specs", ROOT).requirements:
        if req.id not in PROJECT_ADDITIONS:
            counts[family_of(req.id)] = counts.get(family_of(req.id), 0) + 1
    harness = counts.pop("OC-HARNESS")
    assert counts == CATALOG_COUNTS
    assert sum(counts.values()) == 197 and harness > 0
