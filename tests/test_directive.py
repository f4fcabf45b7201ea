"""The test-engine directive grammar and the deterministic token function."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llama_orch.engine_sim.directive import Directive, DirectiveError, parse_directive
from llama_orch.engine_sim.tokens import iter_tokens, token_id

INT_KEYS = ("tokens", "itl_ms", "ttft_ms", "hold_ms", "fail_after", "diverge_at")


@pytest.mark.req("OC-HARNESS-8401", "OC-HARNESS-8402")
def test_directive_is_parsed_and_stripped() -> None:
    d, rest = parse_directive("[[sim tokens=2000 itl_ms=5 overload=false]] Hello world")
    assert d == Directive(tokens=2000, itl_ms=5, overload=False)
    assert rest == "Hello world"
    assert parse_directive("[[sim]]  two spaces") == (Directive(), " two spaces")
    assert parse_directive("[[sim overload=3]]x") == (Directive(overload=3), "x")


@pytest.mark.req("OC-HARNESS-8402")
@pytest.mark.parametrize(
    ("tokens", "limit", "count"), [(None, None, 16), (None, 5, 5), (40, 10, 10), (3, 10, 3)]
)
def test_token_count_is_capped_by_the_request_limit(tokens, limit, count) -> None:
    assert Directive(tokens=tokens).token_count(limit) == count


@pytest.mark.req("OC-HARNESS-8401")
@pytest.mark.parametrize(
    "prompt", ["Hello [[sim tokens=2]]", " [[sim tokens=2]]", "[[simple]]", "[[SIM tokens=1]]"]
)
def test_directive_only_counts_at_the_very_start(prompt: str) -> None:
    assert parse_directive(prompt) == (None, prompt)


@pytest.mark.req("OC-HARNESS-8403")
@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("[[sim tokens=abc]] x", "'tokens' expects a non-negative integer"),
        ("[[sim tokens=-1]] x", "'tokens' expects a non-negative integer"),
        ("[[sim colour=red]] x", "unknown directive key 'colour'"),
        ("[[sim tokens=1 tokens=2]] x", "'tokens' given twice"),
        ("[[sim overload=maybe]]", "'overload' expects true, false or an integer"),
        ("[[sim tokens]] x", "'tokens' is not key=value"),
        ("[[sim tokens=5 x", "unterminated directive"),
        ("[[sim tokens=5\titl_ms=1]] x", "expects a non-negative integer"),
        ("[[sim itl_ms=2147483648]]", "out of range"),
    ],
)
def test_malformed_directives_are_typed_errors(prompt: str, message: str) -> None:
    with pytest.raises(DirectiveError, match=message):
        parse_directive(prompt)


@pytest.mark.req("OC-HARNESS-8402")
@given(
    values=st.dictionaries(st.sampled_from(INT_KEYS), st.integers(0, 2_147_483_647), max_size=6),
    overload=st.booleans(),
    rest=st.text(max_size=40).filter(lambda t: not t.startswith(" ")),
)
def test_any_wellformed_directive_round_trips(values: dict, overload: bool, rest: str) -> None:
    pairs = " ".join(f"{k}={v}" for k, v in values.items())
    prompt = f"[[sim {pairs} overload={str(overload).lower()}]] {rest}"
    d, tail = parse_directive(prompt)
    assert d == Directive(**values, overload=overload)
    assert tail == rest


@pytest.mark.req("OC-HARNESS-8405")
@given(prompt=st.text(max_size=50), seed=st.integers(0, 2**63 - 1), n=st.integers(1, 40))
def test_tokens_are_a_pure_function_of_prompt_seed_index(prompt: str, seed: int, n: int) -> None:
    first = list(iter_tokens(prompt, seed, n))
    assert first == list(iter_tokens(prompt, seed, n))
    assert [t for t, _ in first] == [token_id(prompt, seed, i) for i in range(n)]
    # A salt only matters with a divergence point; before it replicas agree.
    assert list(iter_tokens(prompt, seed, n, salt="replica-b")) == first


@pytest.mark.req("OC-HARNESS-8405")
def test_diverge_at_splits_replicas_exactly_there() -> None:
    a = [t for t, _ in iter_tokens("p", 7, 30, salt="a", diverge_at=12)]
    b = [t for t, _ in iter_tokens("p", 7, 30, salt="b", diverge_at=12)]
    assert a[:12] == b[:12]
    assert a[12] != b[12]
