"""Provider verification: replay each pact interaction against the target with Pact's verifier.

`ContractVerifier` serves, on a loopback port, the two things the Pact verifier talks to:

- the provider-state endpoint (`STATE_PATH`), which sets states up and tears them down through
  `harness.contracts.states` and hands the verifier the values the request needs;
- a recording pass-through to the target for every other path, which keeps each exchange
  (credentials redacted) as evidence for a failing check.

Each interaction is verified by its own verifier run, filtered to its description, so every
interaction gets its own result (a pass, the mismatches Pact found, or a state that could not
be set up) and its own evidence. The target's API key goes to the verifier as a custom
`Authorization` header, except for interactions marked `comments.credentials: "none"`.

Two rules keep that evidence honest:

- Everything an outcome carries (Pact's messages, the verifier's raw output, state errors,
  recorded exchanges), every `Evidence` it hands out and the report Pact prints pass through
  one `Scrubber` (`harness.contracts.scrub`), which walks every string field, so a field
  added later cannot skip redaction.
- Every exchange and state error is tagged with the sequence number of the interaction being
  verified when its request arrived. A request or state set-up that outlives the verifier's
  timeout finishes on a daemon thread during a later interaction; its tag keeps it out of that
  interaction's evidence, and the outcome holds copies, so a late answer cannot rewrite it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import httpx
from pact import Verifier

from llama_orch.harness.client import MAX_BODY_CHARS, Exchange, redact_headers
from llama_orch.harness.contracts.pactfile import PactInteraction
from llama_orch.harness.contracts.scrub import Scrubber, scrubbed_stdout
from llama_orch.harness.contracts.states import ProviderStates, StateError
from llama_orch.harness.results import Evidence

STATE_PATH = "/_llorch/pact-state"
# A failed state change answers 422: the verifier then skips the request (a 5xx would make it
# retry with backoff for minutes, and a 200 would send the request with example values).
STATE_FAILED = 422
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host"}
_NOT_FORWARDED = _HOP_BY_HOP | {"content-length", "accept-encoding"}
_NOT_RETURNED = _HOP_BY_HOP | {"content-length", "content-encoding", "date", "server"}
_REGEX_META = re.compile(r"([\\.+*?()|\[\]{}^$])")
UNANSWERED = "no answer before the Pact verifier gave up on the request"
UNFINISHED = "the body had not ended when the Pact verifier gave up on the request"


@dataclass
class InteractionOutcome:
    """What verifying one interaction showed, with the exchange that showed it."""

    interaction: PactInteraction
    passed: bool = False
    problems: list[str] = field(default_factory=list)  # Pact's mismatches, one per line
    state_error: str | None = None  # a provider state could not be set up
    harness_error: str | None = None  # the verifier could not run the interaction
    exchanges: list[Exchange] = field(default_factory=list)
    api_key_env: str = "LLORCH_API_KEY"
    scrub: Scrubber = field(default_factory=Scrubber, repr=False, compare=False)

    def message(self) -> str:
        head = f"{self.interaction.description!r} ({self.interaction.key})"
        lines = [f"pact mismatch in {head}:", *(f"- {p}" for p in self.problems)]
        return self.scrub("\n".join(lines))

    def evidence(self, message: str) -> Evidence:
        """The exchange the verifier made (the pytest plugin calls this for a failed check)."""
        if not self.exchanges:
            return self.scrub(Evidence(message))
        ex = self.exchanges[-1]
        curl = ex.curl(self.api_key_env)
        return self.scrub(Evidence(message, ex.request_text(), ex.response_text(), curl))


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep stderr quiet
        pass

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _handle(self) -> None:
        seq = self.server.sequence  # the interaction this request belongs to, fixed on arrival
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.command == "POST" and self.path == STATE_PATH:
            self._state(seq, body)
        else:
            self._forward(seq, body)

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        try:
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the verifier gave up on this request; its timeout is already reported

    def _state(self, seq: int, body: bytes) -> None:
        try:
            change = json.loads(body or b"{}")
            state, action = str(change.get("state") or ""), change.get("action", "setup")
            if action == "teardown":
                self.server.states.teardown(state)
                values: dict[str, Any] = {}
            else:
                values = self.server.states.setup(state, change.get("params"))
        except StateError as exc:
            self.server.state_error(seq, str(exc))
            self._reply(STATE_FAILED, [("Content-Type", "text/plain")], str(exc).encode())
            return
        except Exception as exc:  # a harness fault: report it, never pass the interaction
            self.server.state_error(seq, f"harness error in provider state: {exc!r}")
            self._reply(STATE_FAILED, [("Content-Type", "text/plain")], repr(exc).encode())
            return
        self._reply(200, [("Content-Type", "application/json")], json.dumps(values).encode())

    def _forward(self, seq: int, body: bytes) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _NOT_FORWARDED}
        text = body.decode("utf-8", "replace")[:MAX_BODY_CHARS] if body else None
        url = f"{self.server.target_url}{self.path}"
        ex = Exchange(self.command, url, redact_headers(headers), text)
        self.server.record(seq, ex)
        content = b""
        try:
            with self.server.http.stream(
                self.command, self.path, headers=headers, content=body
            ) as resp:
                # The head is evidence as soon as it arrives: a body that then stalls or never
                # ends is told apart from an operation that never answered.
                answer = redact_headers(resp.headers)
                self.server.settle(
                    ex, status=resp.status_code, response_headers=answer, error=UNFINISHED
                )
                for chunk in resp.iter_bytes():
                    content += chunk
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
            partial = content.decode("utf-8", "replace")[:MAX_BODY_CHARS]
            self.server.settle(ex, error=error, response_body=partial)
            self._reply(502, [("Content-Type", "text/plain")], f"target: {error}".encode())
            return
        body_text = content.decode("utf-8", "replace")[:MAX_BODY_CHARS]
        self.server.settle(ex, response_body=body_text, error=None)
        kept = [(k, v) for k, v in resp.headers.multi_items() if k.lower() not in _NOT_RETURNED]
        self._reply(resp.status_code, kept, content)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, target_url: str, states: ProviderStates, timeout: httpx.Timeout) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.target_url = target_url
        self.states = states
        self.http = httpx.Client(base_url=target_url, timeout=timeout)
        self.sequence = 0  # the interaction being verified; handlers tag what they record
        self._lock = threading.Lock()
        self._exchanges: list[tuple[int, Exchange]] = []
        self._state_errors: list[tuple[int, str]] = []

    def begin(self) -> int:
        """Start a new interaction: a new tag; what older ones recorded is dropped."""
        with self._lock:
            self.sequence += 1
            self._exchanges.clear()
            self._state_errors.clear()
            return self.sequence

    def record(self, seq: int, ex: Exchange) -> None:
        with self._lock:
            self._exchanges.append((seq, ex))

    def settle(self, ex: Exchange, **answer: Any) -> None:
        """Fill in the answer in one step, so a copy never sees half of it."""
        with self._lock:
            for name, value in answer.items():
                setattr(ex, name, value)

    def state_error(self, seq: int, message: str) -> None:
        with self._lock:
            self._state_errors.append((seq, message))

    def recorded(self, seq: int) -> tuple[list[Exchange], list[str]]:
        """Copies of interaction `seq`'s exchanges (unanswered ones say so) and state errors."""
        with self._lock:
            exchanges = [dataclasses.replace(ex) for tag, ex in self._exchanges if tag == seq]
            errors = [message for tag, message in self._state_errors if tag == seq]
        for ex in exchanges:
            if ex.status is None and ex.error is None:
                ex.error = UNANSWERED
        return exchanges, errors


def exact(description: str) -> str:
    """A regex (Rust syntax) matching exactly `description`, for the verifier's filter."""
    escaped = _REGEX_META.sub(r"\\\1", description)
    return f"^{escaped}$"


def _problems(result: dict[str, Any]) -> list[str]:
    mismatch = result.get("mismatch") or {}
    if mismatch.get("type") != "mismatches":  # a request or state-change error
        return [str(mismatch.get("message") or mismatch or "the verifier reported an error")]
    out = []
    for m in mismatch.get("mismatches") or ():
        where = f" at {m['path']}" if m.get("path") else ""
        out.append(f"{m.get('type', 'Mismatch')}{where}: {m.get('mismatch', m)}")
    return out or ["the verifier reported a failure without mismatches"]


class ContractVerifier:
    """Verifies pact interactions, one at a time, against one target (a context manager)."""

    def __init__(
        self,
        target: Any,
        *,
        request_timeout_ms: int | None = None,
    ) -> None:
        self.target = target
        self.request_timeout_ms = request_timeout_ms or int(target.timeouts.request_s * 1000)
        self._scrub = Scrubber(target.secrets())
        self._states = ProviderStates(target)
        bounds = target.timeouts
        timeout = httpx.Timeout(bounds.stream_gap_s, connect=bounds.connect_s)
        self._server = _Server(target.url.rstrip("/"), self._states, timeout)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="pact-provider-side", daemon=True
        )
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ContractVerifier:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._server.http.close()
        self._states.close()

    def _verifier(self, interaction: PactInteraction) -> Verifier:
        verifier = (
            Verifier(interaction.provider, host="127.0.0.1")
            .add_transport(url=self.url)
            .add_source(interaction.pact_file)
            .filter(exact(interaction.description))
            .state_handler(f"{self.url}{STATE_PATH}", teardown=True, body=True)
            .set_request_timeout(self.request_timeout_ms)
            .set_coloured_output(enabled=False)
        )
        if interaction.credentials:
            for name, value in self.target.headers().items():
                verifier.add_custom_header(name, value)
        return verifier

    def verify(self, interaction: PactInteraction) -> InteractionOutcome:
        """Replay `interaction` against the target; its outcome and evidence, secrets redacted."""
        seq = self._server.begin()
        outcome = InteractionOutcome(
            interaction, api_key_env=self.target.api_key_env, scrub=self._scrub
        )
        verifier = self._verifier(interaction)
        try:
            with scrubbed_stdout(self._scrub):  # Pact prints what the target sent
                verifier.verify()
        except RuntimeError:
            pass  # any failing interaction makes the run "fail"; the results say which and why
        finally:
            self._states.reset()
        results = verifier.results
        mine = [
            r
            for r in results.get("interactionResults") or ()
            if r.get("description") == interaction.description
        ]
        outcome.exchanges, state_errors = self._server.recorded(seq)
        if state_errors:
            outcome.state_error = "; ".join(state_errors)
        elif len(mine) != 1:
            lines = [line for line in results.get("output") or () if line.strip()]
            outcome.harness_error = (
                f"the Pact verifier ran {len(mine)} results for {interaction.label!r}; "
                f"its output: {' | '.join(lines)[-1500:]}"
            )
        elif mine[0].get("result") == "OK":
            outcome.passed = True
        else:
            outcome.problems = _problems(mine[0])
        return self._scrub(outcome)  # the one exit: every field, present or future, redacted
