"""JSON-lines logging with the structured fields the specs name, and secret redaction.

Records carry their fields through `extra=`; the formatter writes one JSON object per line.
Known secret values (API keys) are replaced wherever they would appear, as a second line of
defence: the code never passes a key to a logger in the first place (OC-CTRL-2041).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable

import orjson

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
REDACTED = "[REDACTED]"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg and every extra field."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        try:  # orjson: several times faster; the standard encoder for what it refuses
            line = orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:
            line = json.dumps(payload, default=str, ensure_ascii=False)
        for secret in self._secrets:
            line = line.replace(secret, REDACTED)
        return line


def configure_logging(level: str = "INFO", secrets: Iterable[str] = (), stream=None) -> None:
    """Route the `reference_impl` loggers to JSON lines on stderr (or `stream`)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    logger = logging.getLogger("llama_orch.reference_impl")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    logging.Formatter.converter = time.gmtime
