"""The uvicorn worker `llorch serve` runs under gunicorn.

uvloop and httptools (both dependencies) rather than whatever happens to be installed, and no
proxy-header middleware: nothing in the reference reads client addresses, and rewriting them
on every request cost about 2% of the worker's CPU under load (issue 16).

Log records of the serving process skip what the JSON log never prints (the caller's file and
line, thread, process names): the logging HOWTO's optimisation switches. Looking up the caller
alone was about a fifth of the cost of a log line.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from uvicorn.workers import UvicornWorker


class OrchWorker(UvicornWorker):
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "uvloop",
        "http": "httptools",
        "proxy_headers": False,
    }

    def init_process(self) -> None:
        logging._srcfile = None  # type: ignore[attr-defined]
        logging.logThreads = False
        logging.logProcesses = False
        logging.logMultiprocessing = False
        super().init_process()
