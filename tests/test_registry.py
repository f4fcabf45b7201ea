"""The one check registry: every check described once, read by coverage, --list and verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from llama_orch.cli.main import main
from llama_orch.cli.registry import full_registry
from llama_orch.harness.collectors import collect_features, collect_whitebox
from llama_orch.harness.registry import Check, Kind, Need, Registry, RegistryError, Role
from llama_orch.harness.requirements import RequirementsError, load_requirements
from llama_orch.resources import data_path

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
  @ORCH-2001 @feature:sessions @needs:tenant_key @stands-on:ORCH-2002 @shape @slow
  Scenario: A full queue rejects
    Given a pool

  Scenario Outline: Row <n>
    Given a pool

    Examples:
      | n |
      | 1 |
      | 2 |
"""


@pytest.fixture(scope="module")
def registry() -> Registry:
    return full_registry()


@pytest.mark.req("OC-HARNESS-8506")
def test_every_source_registers_checks_with_known_ids(registry: Registry) -> None:
    known = {r.id for r in load_requirements(data_path("requirements"))}
    kinds = {c.kind for c in registry}
    assert {Kind.BDD, Kind.CONTRACT, Kind.SCHEMA, Kind.TEST, Kind.METRICS} <= kinds
    assert {Kind.DETERMINISM, Kind.WHITE_BOX} <= kinds
    assert all(set(c.requirements) <= known for c in registry)
    assert all(c.role is Role.SHAPE for c in registry.of_kind(Kind.SCHEMA, Kind.CONTRACT))


@pytest.mark.req("OC-HARNESS-8506")
def test_gherkin_tags_describe_the_check(tmp_path: Path) -> None:
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "queue.feature").write_text(FEATURE)
    first, *rows = list(collect_features(tmp_path))
    assert first.id == "features/q/queue.feature::A full queue rejects"
    assert first.requirements == ("OC-CORE-1001", "ORCH-2001")
    assert (first.features, first.needs, first.stands_on) == (
        ("sessions",),
        (Need.TENANT_KEY,),
        ("ORCH-2002",),
    )
    assert first.role is Role.SHAPE and first.slow and first.family == "q"
    assert [r.id for r in rows] == [
        "features/q/queue.feature::Row <n>[1]",
        "features/q/queue.feature::Row <n>[2]",
    ]


@pytest.mark.req("OC-HARNESS-8506", "OC-HARNESS-8101")
def test_an_unknown_requirement_id_stops_the_collection(tmp_path: Path) -> None:
    (tmp_path / "bad.feature").write_text(
        "Feature: Bad\n  @ORCH-9999\n  Scenario: Names nothing real\n    Given a pool\n"
    )
    registry = Registry().extend(collect_features(tmp_path))
    with pytest.raises(RegistryError, match=r"ORCH-9999 \(named by features/bad.feature"):
        registry.validate({"ORCH-2001"})


def test_two_checks_may_not_share_an_id() -> None:
    a = Check("x", Kind.TEST, ("ORCH-2001",), "f")
    b = Check("x", Kind.TEST, ("ORCH-2002",), "f")
    with pytest.raises(RegistryError, match="two checks share the id"):
        Registry().extend([a, b])
    with pytest.raises(RegistryError, match="names no requirement"):
        Check("y", Kind.TEST, (), "f")
    with pytest.raises(RegistryError, match="stands on its own"):
        Check("z", Kind.TEST, ("ORCH-2001",), "f", stands_on=("ORCH-2001",))


@pytest.mark.req("OC-HARNESS-8504")
def test_white_box_checks_come_from_req_markers_in_tests(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_demo.py").write_text(TEST_MODULE)
    found = {c.id: c.requirements for c in collect_whitebox(tmp_path)}
    assert found == {
        "tests::tests/test_demo.py::test_queue": ("ORCH-2001", "OC-CORE-1001"),
        "tests::tests/test_demo.py::TestFull::test_drop": ("ORCH-2001", "OC-CORE-1002"),
    }


@pytest.mark.req("OC-HARNESS-8504", "OC-HARNESS-8506")
def test_coverage_prints_exactly_the_registry(registry: Registry) -> None:
    result = CliRunner().invoke(main, ["spec", "coverage", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)["requirements"]
    for req_id, listed in payload.items():
        assert listed == [f"{c.kind.value}:{c.id}" for c in registry.proving(req_id)], req_id


@pytest.mark.req("OC-HARNESS-8504")
def test_coverage_fails_on_an_unknown_id(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> Registry:
        raise RegistryError("checks name unknown requirement IDs: ORCH-9999 (named by x)")

    monkeypatch.setattr("llama_orch.cli.registry.full_registry", broken)
    result = CliRunner().invoke(main, ["spec", "coverage"])
    assert result.exit_code == 1 and "ORCH-9999" in result.output
    strict = CliRunner().invoke(main, ["spec", "coverage", "--fail-uncovered"])
    assert strict.exit_code == 1


def test_missing_requirements_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RequirementsError, match="run `llorch spec extract`"):
        load_requirements(tmp_path)
