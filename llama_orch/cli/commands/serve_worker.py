"""The uvicorn worker `llorch serve` runs under gunicorn.

uvloop and httptools (both dependencies) rather than whatever happens to be installed, and no
proxy-header middleware: nothing in the reference reads client addresses, and rewriting them
on every request cost about 2% of the worker's CPU under load (issue 16).
"""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn.workers import UvicornWorker


class OrchWorker(UvicornWorker):
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "uvloop",
        "http": "httptools",
        "proxy_headers": False,
    }
