"""How each simulated engine handles stop sequences, side by side.

The engines disagree, and the simulators reproduce each one's rule on the generated text:

- llama.cpp (`LlamaCppStops`): the stop text is cut from the output. While the unsent text
  ends with the beginning of a stop word, the server holds it back (partial events carry the
  token ids with `content: ""`) and sends it once it can no longer start a stop word. On a
  match the event of the stopping token carries what precedes the stop word; the final event
  says `stop_type: "word"` and names `stopping_word`. Measured on llama-server b1-0c1e570: the
  earliest match position among all stop words wins, and text still held when `n_predict`
  runs out is never streamed (the non-streamed answer does contain it).
- vLLM (`VllmStops`): the stop text is cut too (unless `include_stop_str_in_output`). With stop
  strings the streamed text lags `max(len(stop)) - 1` characters behind the generated text,
  released when the request finishes; the first stop string in request order found near the
  end of the text wins; the chunk of the stopping token has `finish_reason: "stop"` and
  `stop_reason` set to the matched string.
- TGI (`tgi_stopped`) and TensorRT-LLM (`triton_stopped`): generation ends once the output
  ends with a stop sequence, and the stop text stays in the output (TGI reports
  `finish_reason: "stop_sequence"`). TGI checks the token limit first. TensorRT-LLM matches the
  stop word's token ids; the simulator's tokens are whole words, so matching the text's end
  is the same test here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


def _words(stops: Iterable[str]) -> list[str]:
    return [s for s in stops if s]


def partial_stop(text: str, word: str) -> int | None:
    """Where `text` ends with the longest proper beginning of `word` (llama.cpp's
    `string_find_partial_stop`), or None."""
    if not text or not word:
        return None
    last = text[-1]
    for i in range(len(word) - 1, -1, -1):
        if word[i] == last and text.endswith(word[: i + 1]):
            return len(text) - i - 1
    return None


class LlamaCppStops:
    """One slot's stop-word state in llama-server: generated text, what was sent, the match."""

    def __init__(self, stops: Iterable[str]) -> None:
        self.words = _words(stops)
        self.text = ""  # generated text, cut at a stop word once one matched
        self.sent = 0  # characters of `text` already streamed
        self.word: str | None = None  # the stopping word, once one matched

    def push(self, piece: str) -> str:
        """Add one token's text; return what this token's event streams ("" while held)."""
        self.text += piece
        pos = min(self.sent, len(self.text))
        unsent = self.text[pos:]
        found = self._find(unsent, len(piece))
        if found is not None:
            self.text = self.text[: pos + found]
        elif self.words and self._partial(unsent) is not None:
            return ""
        out = self.text[pos:]
        self.sent += len(out)
        return out

    def flush(self) -> str:
        """Held text released at an end of generation (llama.cpp: with the end-of-sequence
        token's event; not at the token limit)."""
        out = self.text[self.sent :]
        self.sent = len(self.text)
        return out

    def _find(self, unsent: str, piece_len: int) -> int | None:
        best: int | None = None
        for word in self.words:
            window = len(word) + piece_len
            pos = unsent.find(word, max(0, len(unsent) - window))
            if pos >= 0 and (best is None or pos < best):
                best, self.word = pos, word
        return best

    def _partial(self, unsent: str) -> int | None:
        found = [p for w in self.words if (p := partial_stop(unsent, w)) is not None]
        return min(found) if found else None


class VllmStops:
    """vLLM's stop-string check and the streaming hold-back of its incremental detokenizer."""

    def __init__(self, stops: Iterable[str], include_in_output: bool = False) -> None:
        self.stops = _words(stops)
        self.include = include_in_output
        self.text = ""
        self.offset = 0  # characters of `text` already streamed
        self.hold = max(map(len, self.stops)) - 1 if self.stops and not include_in_output else 0
        self.matched: str | None = None

    def push(self, piece: str) -> str | None:
        """Add one token's text; the matched stop string (text cut accordingly) or None."""
        self.text += piece
        for stop in self.stops:
            index = self.text.find(stop, 1 - len(piece) - len(stop))
            if index == -1:
                continue
            if self.include:
                index += len(stop)
            self.text = self.text[:index] if index < len(self.text) else self.text
            self.matched = stop
            return stop
        return None

    def delta(self, finished: bool) -> str:
        """The text this token's chunk carries: all of it once finished, else what lies
        before the hold-back window."""
        end = len(self.text) - (0 if finished else self.hold)
        if end <= self.offset:
            return ""
        out, self.offset = self.text[self.offset : end], end
        return out


def tgi_stopped(text: str, stops: Iterable[str]) -> bool:
    """TGI's `StopSequenceCriteria`: a regex of the escaped sequence anchored with `$`."""
    return any(re.search(re.escape(s) + "$", text) for s in _words(stops))


def triton_stopped(text: str, stops: Iterable[str]) -> bool:
    """TensorRT-LLM ends a sequence whose output ends with a stop word."""
    return any(text.endswith(s) for s in _words(stops))
