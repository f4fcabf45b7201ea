"""Stop sequences on the adapter side: one rule for every engine's TokenEvents.

The rule: the events of a stream carry the generated text up to, and not including, the first
stop string to appear (the first one completed; of those completed by the same token, the one
that starts earliest, then the first in the request), and the stream then ends with finish
reason "stop". Engines get the stop strings in their own
field and differ in what they send back:

- llama.cpp (`stop`) and vLLM (`stop`) cut the stop text themselves and hold back text that may
  begin one; their pieces that carry token ids but no text are joined to the next piece with
  text (the event's `token_id` and logprobs are those of the piece's last token). The adapters
  trust the engine's cut and do not scan again.
- TGI (`parameters.stop`) and TensorRT-LLM (`stop_words`) keep the stop text in the output and
  only stop once the output ends with it (TensorRT-LLM: ends with its token ids). Their adapters
  run `StopScanner`, which also ends the stream (and closes the request) when a stop string
  turns up inside a token, where those engines would go on generating.
- The in-process mock runs `StopScanner` over its own tokens.
"""

from __future__ import annotations

from collections.abc import Iterable

from llama_orch.reference_impl.adapters.base import TokenAlt, TokenEvent
from llama_orch.reference_impl.adapters.logprobs import TokenLogprob

_Held = tuple[str, int | None, float | None, tuple[TokenAlt, ...]]


class StopScanner:
    """Cuts a token stream before its first stop string, one token at a time.

    A token is held back while its text may be the beginning of a stop string and released
    once it cannot be. On a match the tokens before it are released whole, the token where the
    match begins is released cut to the text before it (when any is left), and the rest is
    dropped. Released events are numbered from 0 in order (`released` counts them, `received`
    counts the tokens pushed). Without stop strings every token is released at once.
    """

    __slots__ = ("_held", "matched", "received", "released", "stops")

    def __init__(self, stops: Iterable[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.matched: str | None = None
        self.received = 0
        self.released = 0
        self._held: list[_Held] = []

    def push(
        self,
        text: str,
        token_id: int | None = None,
        logprob: float | None = None,
        top: tuple[TokenAlt, ...] = (),
    ) -> list[TokenEvent]:
        """Add one token's text; the events that can be released now (maybe none)."""
        if self.matched is not None:
            return []
        self.received += 1
        if not self.stops:
            self.released += 1
            return [TokenEvent(self.released - 1, text, token_id, logprob, top)]
        self._held.append((text, token_id, logprob, top))
        buffer = "".join(piece[0] for piece in self._held)
        found = self._first_match(buffer)
        if found is not None:
            pos, self.matched = found
            return self._release_until(pos, cut=True)
        return self._release_until(self._hold_from(buffer), cut=False)

    def finish(self) -> list[TokenEvent]:
        """At the end of the stream without a match: everything still held."""
        if self.matched is not None:
            return []
        return self._release_until(None, cut=False)

    def _first_match(self, buffer: str) -> tuple[int, str] | None:
        best: tuple[int, str] | None = None
        for stop in self.stops:
            pos = buffer.find(stop)
            if pos >= 0 and (best is None or pos < best[0]):
                best = (pos, stop)
        return best

    def _hold_from(self, buffer: str) -> int:
        """Start of the longest end of `buffer` that begins some stop string."""
        start = len(buffer)
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(buffer)), 0, -1):
                if buffer.endswith(stop[:k]):
                    start = min(start, len(buffer) - k)
                    break
        return start

    def _release_until(self, limit: int | None, *, cut: bool) -> list[TokenEvent]:
        """Release held tokens that end by `limit` (None: all); with `cut`, the token that
        crosses `limit` goes out shortened and everything after it is dropped."""
        out: list[TokenEvent] = []
        offset = kept = 0
        for text, tid, logprob, top in self._held:
            end = offset + len(text)
            if limit is not None and end > limit:
                if cut and limit > offset:
                    out.append(TokenEvent(self.released, text[: limit - offset], tid, logprob, top))
                    self.released += 1
                break
            out.append(TokenEvent(self.released, text, tid, logprob, top))
            self.released += 1
            offset, kept = end, kept + 1
        self._held = [] if cut else self._held[kept:]
        return out


class PieceJoiner:
    """Pieces of an engine that cuts stop text itself (llama.cpp, vLLM) into TokenEvents.

    While such an engine holds text back, its pieces carry token ids (and logprobs) but no
    text; they lend them to the next piece with text, so each event's `token_id` and logprobs
    are those of the last token it covers. `held` keeps the ids not yet covered by an event.
    """

    __slots__ = ("_probs", "held")

    def __init__(self) -> None:
        self.held: list[int] = []
        self._probs: TokenLogprob | None = None

    def join(
        self, index: int, text: str, ids: list[int], probs: list[TokenLogprob]
    ) -> TokenEvent | None:
        """The event for this piece, or None while the engine sends no text."""
        if probs:
            self._probs = probs[-1]
            if not ids and probs[-1][0] is not None:
                ids = [probs[-1][0]]
        self.held.extend(ids)
        return self.emit(index, text) if text else None

    def emit(self, index: int, text: str) -> TokenEvent:
        """An event covering the held ids, e.g. with text the engine never streamed."""
        tid = self.held[-1] if self.held else None
        info, self._probs, self.held = self._probs, None, []
        if info is None:
            return TokenEvent(index, text, tid)
        return TokenEvent(index, text, tid, info[1], info[2])
