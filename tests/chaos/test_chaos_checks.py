"""The chaos suite's own checks can fail: bad streams and leaked keys are caught."""

from __future__ import annotations

from pathlib import Path

from tests.chaos._client import Event, Stream
from tests.chaos.conftest import Chaos


def _stream(*events: tuple[str, dict]) -> Stream:
    stream = Stream("t", status=200)
    stream.events = [Event(name, data, float(n)) for n, (name, data) in enumerate(events)]
    return stream


def test_index_problems_are_found() -> None:
    good = _stream(("token", {"i": 0}), ("token", {"i": 1}), ("end", {"tokens_out": 2}))
    assert good.index_problem() is None and not good.truncated
    duplicated = _stream(("token", {"i": 0}), ("token", {"i": 0}), ("end", {"tokens_out": 2}))
    assert "1 duplicated" in duplicated.index_problem()
    lost = _stream(("token", {"i": 0}), ("token", {"i": 2}), ("end", {"tokens_out": 2}))
    assert lost.index_problem()
    short_count = _stream(("token", {"i": 0}), ("end", {"tokens_out": 2}))
    assert "tokens_out" in short_count.index_problem()
    cut = _stream(("token", {"i": 0}))
    assert cut.truncated and cut.terminal is None


def test_secrets_scan_finds_a_leaked_key(tmp_path: Path) -> None:
    chaos = Chaos("short", tmp_path)
    chaos.keys.add("k3y-" + "x" * 20)
    log = chaos.workdir("leaky") / "reference.log"
    log.write_text('{"msg": "clean"}\n', encoding="utf-8")
    assert chaos.secrets_found() == []
    log.write_text('{"authorization": "Bearer k3y-' + "x" * 20 + '"}\n', encoding="utf-8")
    assert len(chaos.secrets_found()) == 1
