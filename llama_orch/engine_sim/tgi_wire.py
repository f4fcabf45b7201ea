"""TGI's tokens on the wire: the simulator's words as TGI streams them, and event framing.

TGI's Python server decodes each new token against the text before it and sends `text: ""`
while the decoded output ends in U+FFFD, i.e. inside a multibyte character; the token that
completes the character carries all the held text (huggingface/text-generation-inference
server/text_generation_server/models/model.py, `Model.decode_token`). The token's `id` and
`logprob` are real either way.

The simulator's tokenizer has one token per word. With `split_multibyte` it behaves like a
byte-fallback tokenizer for words that are not ASCII: such a word is two tokens, a lead byte
token (its own id, `text: ""`) and the rest of the word (the word's id, the whole word's
text); the word's log-probability is shared between them. Off (the default), every word is
one token, as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import falcon.asgi

from llama_orch.engine_sim.engine import SimToken
from llama_orch.engine_sim.tokens import VOCAB_SIZE, token_text

EOS_ID = 2
EOS_TEXT = "</s>"
EOS_TOKEN = {"id": EOS_ID, "text": EOS_TEXT, "logprob": -0.0001, "special": True}


class TgiEvent(falcon.asgi.SSEvent):
    """TGI (axum) frames an event as `data:<json>` with no space after the colon."""

    def serialize(self, handler: Any = None) -> bytes:
        return b"data:" + (self.data or b"") + b"\n\n"


def dumps(obj: Any) -> bytes:
    """Compact JSON with raw UTF-8, as serde_json writes it."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class WireToken:
    """One token as TGI sends it; `word` is the simulator token it belongs to, `complete`
    whether the word's text is out after it."""

    id: int
    text: str
    logprob: float
    word: SimToken
    complete: bool = True

    def json(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "logprob": self.logprob, "special": False}


def lead_byte_id(word_id: int) -> int:
    """The id of a word's lead byte token: distinct from the word's, fixed per word."""
    return (word_id * 7919 + 17) % VOCAB_SIZE


def wire_tokens(word: SimToken, split_multibyte: bool) -> Iterator[WireToken]:
    """The tokens TGI streams for one simulator word."""
    if not split_multibyte or word.text.isascii():
        yield WireToken(word.token_id, word.text, word.logprob, word)
        return
    half = word.logprob / 2
    yield WireToken(lead_byte_id(word.token_id), "", half, word, complete=False)
    yield WireToken(word.token_id, word.text, half, word)


def decoded(tokens: list[WireToken]) -> str:
    """`generated_text` of these tokens: a word cut inside a character ends in U+FFFD."""
    text = "".join(t.text for t in tokens)
    return text + "\ufffd" if tokens and not tokens[-1].complete else text


def top_tokens(word: SimToken) -> list[dict[str, Any]]:
    return [{"id": t, "text": token_text(t), "logprob": lp, "special": False} for t, lp in word.top]
