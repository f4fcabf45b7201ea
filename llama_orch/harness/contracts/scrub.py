"""The one place where the provider side redacts the target's secrets.

A target under test may echo its API key back (a header, a body, an error text), and Pact
repeats what the target sent in its mismatches and in the report it prints. `Scrubber` redacts
every string of a value, walking containers and dataclass fields, so an outcome or an
`Evidence` cannot carry a field that was left out by mistake. `scrubbed_stdout` does the same
for the report Pact's core prints straight onto file descriptor 1, out of Python's reach.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from typing import TypeVar

from llama_orch.harness.reports.model import redact

T = TypeVar("T")


class Scrubber:
    """Redacts secrets (and header-shaped credentials) in every string of a value.

    Strings, lists, tuples, dicts and dataclass instances (through their init fields) come
    back as copies with every string redacted; other values come back as they are.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets = tuple(s for s in secrets if s)

    def __repr__(self) -> str:  # never show the secrets, e.g. in an assertion's repr
        return f"Scrubber({len(self._secrets)} secrets)"

    def __call__(self, value: T) -> T:
        if isinstance(value, str):
            return redact(value, self._secrets)  # type: ignore[return-value]
        if isinstance(value, (list, tuple)):
            return type(value)(self(v) for v in value)  # type: ignore[return-value]
        if isinstance(value, dict):
            return {self(k): self(v) for k, v in value.items()}  # type: ignore[return-value]
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes = {
                f.name: self(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init
            }
            return dataclasses.replace(value, **changes)
        return value


@contextlib.contextmanager
def scrubbed_stdout(scrub: Scrubber) -> Iterator[None]:
    """Hold what is written to file descriptor 1 in the block; write it back scrubbed.

    Pact's core prints its verification report (response bodies included) with Rust's
    stdout, which neither Python nor pytest can filter line by line. Nothing is lost: the
    whole text is written back where descriptor 1 pointed, with secrets redacted.
    """
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no standard output at all: nothing can leak through it
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
            held.seek(0)
            text = held.read().decode("utf-8", "replace")
            data = scrub(text).encode("utf-8")
            while data:
                data = data[os.write(1, data) :]
