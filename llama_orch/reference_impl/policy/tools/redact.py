"""Host-side redaction of tool results and audit records (OC-POLICY-4031, OC-POLICY-4032).

Independent of the SDK's own redaction inside the plugin: a gap in one layer is not a leak
through the other. URLs lose their user-info and the values of credential-like query
parameters; text loses credential-shaped tokens, private-key blocks, e-mail addresses and
phone numbers (each switchable), plus the operator's own patterns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[REDACTED]"
DEFAULT_QUERY_PARAMS = frozenset(
    {
        "token",
        "access_token",
        "api_key",
        "apikey",
        "key",
        "password",
        "passwd",
        "secret",
        "sig",
        "signature",
        "auth",
        "session",
        "x-amz-signature",
        "x-amz-credential",
    }
)
SECRET_PATTERNS = (
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----",
    r"\bsk-[A-Za-z0-9_-]{16,}",
    r"\bgh[pousr]_[A-Za-z0-9]{20,}",
    r"\bgithub_pat_[A-Za-z0-9_]{20,}",
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
    r"\bAKIA[0-9A-Z]{16}\b",
    r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}",
)
# `password: hunter2` in prose; URLs are handled by their query parameters instead.
KEY_VALUE = r"(?i)\b(?:password|passwd|api[_-]?key|secret|token)\s*[:=]\s*[^\s&;,\"'<>]+"
EMAIL = r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"
PHONE = r"(?<!\w)\+?\d[\d ().-]{7,}\d(?!\w)"


class Redactor:
    """Compiled redaction rules; pure (same text in, same text out)."""

    def __init__(
        self,
        *,
        query_params: Iterable[str] = (),
        patterns: Iterable[str] = (),
        emails: bool = True,
        phone_numbers: bool = True,
    ) -> None:
        self.query_params = DEFAULT_QUERY_PARAMS | {p.lower() for p in query_params}
        rules = [*SECRET_PATTERNS, *patterns]
        if emails:
            rules.append(EMAIL)
        self._text = [re.compile(p, re.DOTALL) for p in rules]
        # Digit runs in URL paths are ids, not phone numbers: phones are redacted in text only.
        self._phone = re.compile(PHONE) if phone_numbers else None
        self._key_value = re.compile(KEY_VALUE)

    def url(self, url: str) -> str:
        """The URL without user-info or credential-like query values (and never a fragment)."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return REDACTED
        netloc = parts.netloc
        if "@" in netloc:
            netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = urlencode(
            [(k, REDACTED if k.lower() in self.query_params else v) for k, v in pairs],
            safe="[]",
        )
        return self._rules(urlunsplit((parts.scheme, netloc, parts.path, query, "")))

    def text(self, text: str) -> str:
        text = self._key_value.sub(REDACTED, self._rules(text))
        return self._phone.sub(REDACTED, text) if self._phone is not None else text

    def _rules(self, text: str) -> str:
        for rule in self._text:
            text = rule.sub(REDACTED, text)
        return text
