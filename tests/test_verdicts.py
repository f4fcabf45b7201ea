"""The verdict engine against specs/80 §3 and §4: one rule per test, then invariants over
random inputs (Hypothesis), so that precedence mistakes show up as counterexamples."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llama_orch.harness.results import CheckResult, Evidence, Outcome
from llama_orch.harness.verdicts import (
    PRECEDENCE,
    UnknownRequirementError,
    Verdict,
    VerdictInputError,
    claimed_not_shown,
    compute,
    exit_code,
    report_outcome,
    result_of,
    root_causes,
    summary,
)


@dataclass(frozen=True)
class Req:
    id: str
    level: str = "must"
    profile: str = "core"
    verify: str = "black-box"


def check(cid: str, outcome: Outcome | str, *ids: str, message: str = "") -> CheckResult:
    return CheckResult(cid, "bdd", ids, Outcome(outcome), Evidence(message=message))


def one(req: Req, *results: CheckResult, profile: str = "extended", **kw) -> Verdict:
    [v] = compute([req], results, profile=profile, **kw)
    return v.verdict


@pytest.mark.req("OC-HARNESS-8101")
def test_verdict_table_and_precedence_order_are_the_specs() -> None:
    assert [v.value for v in Verdict] == [
        "pass", "fail", "not-supported", "skipped", "unverified", "uncovered", "waived",
    ]  # fmt: skip
    assert [v.value for v in PRECEDENCE] == [
        "skipped", "waived", "fail", "not-supported", "pass", "unverified", "uncovered",
    ]  # fmt: skip


@pytest.mark.req("OC-HARNESS-8101", "OC-HARNESS-8103", "OC-HARNESS-8108")
def test_precedence_skipped_then_waived_then_fail() -> None:
    r = Req("ORCH-2001")
    failed = check("c1", "failed", r.id)
    assert one(r, failed) is Verdict.FAIL
    assert one(r, failed, waivers={r.id: "known gap"}) is Verdict.WAIVED
    assert one(r, failed, waivers={r.id: "x"}, only=set()) is Verdict.SKIPPED


@pytest.mark.req("OC-HARNESS-8101")
def test_unknown_ids_are_a_harness_error_naming_them() -> None:
    reqs = [Req("ORCH-2001")]
    with pytest.raises(UnknownRequirementError) as err:
        compute(reqs, [check("c1", "passed", "ORCH-2001", "ORCH-9999")], profile="core")
    assert err.value.unknown == {"ORCH-9999": ("c1",)}
    assert "ORCH-9999" in str(err.value) and "c1" in str(err.value)
    with pytest.raises(UnknownRequirementError, match="OC-CORE-1001"):
        compute(reqs, [], profile="core", waivers={"OC-CORE-1001": "why"})
    with pytest.raises(UnknownRequirementError, match="ORCH-3000"):
        compute(reqs, [], profile="core", only={"ORCH-3000"})


@pytest.mark.req("OC-HARNESS-8101")
def test_inconsistent_input_is_rejected() -> None:
    with pytest.raises(VerdictInputError, match="duplicate requirement"):
        compute([Req("ORCH-2001"), Req("ORCH-2001")], [], profile="core")
    dup = [check("c1", "passed", "ORCH-2001"), check("c1", "failed", "ORCH-2001")]
    with pytest.raises(VerdictInputError, match="more than once"):
        compute([Req("ORCH-2001")], dup, profile="core")
    with pytest.raises(VerdictInputError, match="profile"):
        compute([Req("ORCH-2001")], [], profile="full")  # type: ignore[arg-type]


@pytest.mark.req("OC-HARNESS-8102", "OC-HARNESS-8103")
def test_pass_needs_a_passed_check_and_no_failed_one() -> None:
    r = Req("ORCH-2001")
    assert one(r, check("a", "passed", r.id)) is Verdict.PASS
    assert one(r, check("a", "passed", r.id), check("b", "failed", r.id)) is Verdict.FAIL


@pytest.mark.req("OC-HARNESS-8110")
def test_no_hollow_pass_every_judging_check_must_have_run() -> None:
    r = Req("ORCH-2001")
    # A behaviour check that errored next to a passed one: the requirement is not shown.
    [v] = compute([r], [check("a", "passed", r.id), check("b", "error", r.id)], profile="core")
    assert v.verdict is Verdict.UNVERIFIED and "1 of 2 checks" in (v.reason or "")
    # A shape check passing beside an errored behaviour check proves nothing about behaviour.
    shape = CheckResult("s", "schema", (r.id,), Outcome.PASSED, role="shape")
    assert one(r, shape, check("b", "error", r.id)) is Verdict.UNVERIFIED
    # With only shape checks, the shape checks judge.
    assert one(r, shape) is Verdict.PASS
    # A shape check's failure still fails the requirement.
    bad = CheckResult("s2", "schema", (r.id,), Outcome.FAILED, role="shape")
    assert one(r, bad, check("b", "passed", r.id)) is Verdict.FAIL


@pytest.mark.req("OC-HARNESS-8110")
def test_white_box_tests_count_for_a_black_box_requirement_only_on_the_reference() -> None:
    r = Req("ORCH-2001")
    wb = CheckResult("tests::t", "white-box", (r.id,), Outcome.PASSED)
    [v] = compute([r], [wb], profile="core", embedded=False)
    assert v.verdict is Verdict.UNVERIFIED and "only white-box" in (v.reason or "")
    [v] = compute([r], [wb], profile="core", embedded=True)
    assert v.verdict is Verdict.PASS
    # Beside a black-box check, the white-box one does not decide the pass.
    errored_wb = CheckResult("tests::u", "white-box", (r.id,), Outcome.ERROR)
    assert one(r, check("a", "passed", r.id), errored_wb) is Verdict.PASS


@pytest.mark.req("OC-HARNESS-8111")
def test_a_blocked_check_makes_its_requirement_unverified_and_names_the_root_cause() -> None:
    root, leaf = Req("ORCH-2002"), Req("ORCH-2004")
    framing = check("f", "failed", root.id)
    blocked = CheckResult(
        "s", "bdd", (leaf.id,), Outcome.ERROR, Evidence("blocked: event names"), 0.0, (root.id,)
    )
    verdicts = compute([root, leaf], [framing, blocked], profile="core")
    by_id = {v.id: v for v in verdicts}
    assert by_id[root.id].verdict is Verdict.FAIL
    assert by_id[leaf.id].verdict is Verdict.UNVERIFIED
    assert (by_id[leaf.id].reason or "").startswith("blocked by ORCH-2002")
    assert root_causes(verdicts) == [root.id]


@pytest.mark.req("OC-HARNESS-8104")
def test_not_supported_only_for_optional_requirements() -> None:
    absent = check("a", "not-supported", "X-1", message="feature 'sessions' absent")
    for level, profile, expected in [
        ("must", "core", Verdict.FAIL),
        ("must", "extended", Verdict.NOT_SUPPORTED),
        ("should", "extended", Verdict.NOT_SUPPORTED),
        ("may", "core", Verdict.NOT_SUPPORTED),
    ]:
        [v] = compute([Req("X-1", level, profile)], [absent], profile="extended")
        assert v.verdict is expected, (level, profile)
        assert v.reason == (None if expected is Verdict.FAIL else "feature 'sessions' absent")
    # A declaration without any check (capability data alone) works the same way.
    [v] = compute(
        [Req("X-1", "should", "extended")],
        [],
        profile="extended",
        unsupported={"X-1": "no sessions"},
    )
    assert (v.verdict, v.reason) == (Verdict.NOT_SUPPORTED, "no sessions")
    assert one(Req("X-1"), unsupported={"X-1": "no sessions"}) is Verdict.FAIL
    # A failed check beats the declaration.
    assert one(Req("X-1", "should"), check("b", "failed", "X-1"), absent) is Verdict.FAIL


@pytest.mark.req("OC-HARNESS-8105")
def test_skipped_exactly_for_deselected_requirements() -> None:
    reqs = [Req("A-1"), Req("A-2", "should", "extended"), Req("A-3")]
    results = [check(f"c{i}", "passed", r.id) for i, r in enumerate(reqs)]
    core = compute(reqs, results, profile="core")
    assert [v.verdict for v in core] == [Verdict.PASS, Verdict.SKIPPED, Verdict.PASS]
    assert "extended" in (core[1].reason or "")
    assert [v.in_profile for v in core] == [True, False, True]
    picked = compute(reqs, results, profile="extended", only={"A-3"})
    assert [v.verdict for v in picked] == [Verdict.SKIPPED, Verdict.SKIPPED, Verdict.PASS]
    assert picked[0].reason == "not selected by --only / --family"


@pytest.mark.req("OC-HARNESS-8106")
def test_checks_without_result_give_unverified_with_a_reason() -> None:
    r = Req("ORCH-2001")
    results = [
        check("a", "undefined", r.id, message="undefined step: Given x"),
        check("b", "error", r.id),
        check("c", "skipped", r.id),
    ]
    [v] = compute([r], results, profile="core")
    assert v.verdict is Verdict.UNVERIFIED
    assert v.reason is not None
    assert "1 undefined step" in v.reason and "1 error" in v.reason and "Given x" in v.reason
    assert summary([v])["pass"] == 0
    assert report_outcome(Outcome.UNDEFINED) == "error"
    assert {report_outcome(o) for o in Outcome} == {"passed", "failed", "error", "not-run"}


@pytest.mark.req("OC-HARNESS-8107")
def test_uncovered_when_no_check_names_it_including_manual_ones() -> None:
    manual = Req("ORCH-3041", verify="manual")
    passed = [check("a", "passed", "ORCH-2001")]
    verdicts = compute([manual, Req("ORCH-2001")], passed, profile="core")
    assert [v.verdict for v in verdicts] == [Verdict.UNCOVERED, Verdict.PASS]
    assert verdicts[0].reason is None


@pytest.mark.req("OC-HARNESS-8108")
def test_waiver_needs_a_reason_and_carries_it() -> None:
    with pytest.raises(VerdictInputError, match="ORCH-1101"):
        compute([Req("ORCH-1101")], [], profile="core", waivers={"ORCH-1101": "  "})
    [v] = compute([Req("ORCH-1101")], [], profile="core", waivers={"ORCH-1101": "CPU-only"})
    assert (v.verdict, v.reason) == (Verdict.WAIVED, "CPU-only")


@pytest.mark.req("OC-HARNESS-8109")
def test_claimed_but_not_shown_lists_features_with_non_passing_requirements() -> None:
    reqs = [Req("A-1"), Req("A-2"), Req("B-1")]
    results = [check("a", "passed", "A-1"), check("b", "failed", "A-2")]
    verdicts = compute(reqs, results, profile="core")
    claims = {"zeta": ["A-1"], "alpha": ["A-2", "A-1"], "beta": ["B-1"], "empty": []}
    got = claimed_not_shown(verdicts, claims)
    assert [(c.feature, c.requirements) for c in got] == [
        ("alpha", ("A-2",)),
        ("beta", ("B-1",)),
        ("empty", ()),
    ]
    with pytest.raises(UnknownRequirementError, match="C-9"):
        claimed_not_shown(verdicts, {"x": ["C-9"]})


@pytest.mark.req("OC-HARNESS-8109")
def test_requirements_the_run_deselected_are_not_missing_from_a_claim() -> None:
    reqs = [Req("A-1"), Req("E-1", "must", "extended"), Req("E-2", "must", "extended")]
    results = [check("a", "passed", "A-1"), check("e", "failed", "E-2")]
    core = compute(reqs, results, profile="core")
    claims = {"mixed": ["A-1", "E-1"], "extended_only": ["E-1", "E-2"]}
    assert claimed_not_shown(core, claims) == []  # the extended ones were not judged
    extended = compute(reqs, results, profile="extended")
    got = claimed_not_shown(extended, claims)
    assert [(c.feature, c.requirements) for c in got] == [
        ("extended_only", ("E-1", "E-2")),
        ("mixed", ("E-1",)),
    ]


@pytest.mark.req("OC-HARNESS-8201")
def test_run_result_from_in_profile_verdicts() -> None:
    must, should, ext = Req("A-1"), Req("A-2", "should", "core"), Req("A-3", "must", "extended")
    reqs = [must, should, ext]

    def run(outcomes: dict[str, str], profile: str = "core", **kw) -> str:
        results = [check(f"c-{i}", o, i) for i, o in outcomes.items()]
        return result_of(compute(reqs, results, profile=profile, **kw), profile)

    everything = {"A-1": "passed", "A-2": "passed", "A-3": "passed"}
    assert run(everything, "extended") == "success"
    # A-3 lies outside the core profile: its `skipped` does not count; --only's does.
    assert run(everything, "core") == "success"
    assert run(everything, "extended", only={"A-1", "A-2"}) == "partial"
    assert run({**everything, "A-2": "failed"}, "extended") == "success"  # optional fail
    assert run({**everything, "A-3": "failed"}, "extended") == "failure"
    assert run({"A-1": "passed", "A-2": "error", "A-3": "passed"}, "extended") == "partial"
    assert run({**everything, "A-1": "failed"}, "extended", waivers={"A-1": "r"}) == "partial"


@pytest.mark.req("OC-HARNESS-8202")
def test_exit_codes() -> None:
    assert exit_code("success") == 0
    assert exit_code("failure") == 1
    assert exit_code("partial") == 1
    assert exit_code("partial", partial_exit_code=0) == 0
    assert exit_code("failure", partial_exit_code=0) == 1
    with pytest.raises(ValueError):
        exit_code("partial", partial_exit_code=2)


@pytest.mark.req("OC-HARNESS-8101")
def test_summary_has_all_seven_keys_in_table_order() -> None:
    verdicts = compute([Req("A-1"), Req("A-2")], [check("a", "passed", "A-1")], profile="core")
    assert summary(verdicts) == {
        "pass": 1, "fail": 0, "not-supported": 0, "skipped": 0,
        "unverified": 0, "uncovered": 1, "waived": 0,
    }  # fmt: skip
    assert list(summary([])) == [v.value for v in Verdict]


# ---- properties -------------------------------------------------------------------------

_IDS = [f"{fam}-{n}" for fam in ("OC-A", "OC-B") for n in range(1001, 1005)]


@st.composite
def scenarios(draw: st.DrawFn):
    ids = draw(st.lists(st.sampled_from(_IDS), min_size=1, max_size=6, unique=True))
    level = st.sampled_from(["must", "should", "may"])
    req_profile = st.sampled_from(["core", "extended"])
    reqs = [Req(i, draw(level), draw(req_profile)) for i in ids]
    outcome = st.sampled_from(list(Outcome))
    named = st.lists(st.sampled_from(ids), min_size=1, max_size=3)
    results = [
        check(f"check-{k}", draw(outcome), *draw(named)) for k in range(draw(st.integers(0, 8)))
    ]
    subset = st.lists(st.sampled_from(ids), unique=True).map(set)
    profile = draw(st.sampled_from(["core", "extended"]))
    only = draw(st.none() | subset)
    waivers = {i: "reason" for i in draw(subset)}
    unsupported = {i: "absent" for i in draw(subset)}
    return reqs, results, profile, only, waivers, unsupported


@pytest.mark.req(
    "OC-HARNESS-8101", "OC-HARNESS-8102", "OC-HARNESS-8103", "OC-HARNESS-8104",
    "OC-HARNESS-8105", "OC-HARNESS-8106", "OC-HARNESS-8107", "OC-HARNESS-8201",
)  # fmt: skip
@given(scenarios())
def test_verdict_invariants(scenario) -> None:
    reqs, results, profile, only, waivers, unsupported = scenario
    verdicts = compute(
        reqs, results, profile=profile, only=only, waivers=waivers, unsupported=unsupported
    )
    # Exactly one verdict per requirement, in input order.
    assert [v.id for v in verdicts] == [r.id for r in reqs]
    counts = summary(verdicts)
    assert sum(counts.values()) == len(reqs)
    for v in verdicts:
        outcomes = {c.outcome for c in results if v.id in c.requirement_ids}
        deselected = not v.in_profile or (only is not None and v.id not in only)
        assert (v.verdict is Verdict.SKIPPED) == deselected
        if v.verdict is Verdict.PASS:  # every check that judges it passed (8110)
            assert outcomes == {Outcome.PASSED}
        if Outcome.FAILED in outcomes and v.verdict not in (Verdict.SKIPPED, Verdict.WAIVED):
            assert v.verdict is Verdict.FAIL
        if v.verdict is Verdict.UNVERIFIED:
            assert outcomes and Outcome.FAILED not in outcomes and outcomes != {Outcome.PASSED}
        if v.verdict is Verdict.NOT_SUPPORTED:
            assert v.requirement.level != "must" or v.requirement.profile != "core"
        if v.verdict is Verdict.WAIVED:
            assert v.reason == waivers[v.id]
        early = v.verdict in (Verdict.SKIPPED, Verdict.WAIVED) or v.id in unsupported
        if not early:
            assert (v.verdict is Verdict.UNCOVERED) == (not outcomes)
        assert v.verdict is not Verdict.UNCOVERED or not outcomes
    # Unverified is never counted as passed.
    assert counts["pass"] == sum(v.verdict is Verdict.PASS for v in verdicts)
    # The run fails exactly when an in-profile MUST requirement fails.
    must_fails = any(
        v.in_profile and v.requirement.level == "must" and v.verdict is Verdict.FAIL
        for v in verdicts
    )
    result = result_of(verdicts, profile)
    assert (result == "failure") == must_fails
    if any(v.in_profile and v.verdict is Verdict.UNVERIFIED for v in verdicts):
        assert result != "success"
