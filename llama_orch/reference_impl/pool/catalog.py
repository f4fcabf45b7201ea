"""Model artifact checks: SHA-256 of a local model file, verified before it is loaded.

Hashing a 250 MB GGUF takes about a second, so digests are cached by (path, size, mtime): a
restart of the same file does not hash it again, a replaced or touched file does. The cache
holds a bounded number of entries and drops the least recently used (ORCH-3042).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path

UNTRUSTED_ARTIFACT = "UNTRUSTED_ARTIFACT"
CHUNK_BYTES = 1 << 20


class UntrustedArtifact(Exception):
    """The file's digest differs from the configured one; the model is not loaded."""

    code = UNTRUSTED_ARTIFACT

    def __init__(self, path: Path, expected: str, actual: str) -> None:
        super().__init__(
            f"{UNTRUSTED_ARTIFACT}: {path} has sha256:{actual}, expected sha256:{expected}"
        )
        self.path = path
        self.expected = expected
        self.actual = actual


def file_sha256(path: Path, chunk_bytes: int = CHUNK_BYTES) -> str:
    """Hex SHA-256 of a file, read in chunks so memory stays flat."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


class DigestCache:
    """Thread-safe, bounded cache of file digests keyed by (path, size, mtime_ns)."""

    def __init__(self, max_entries: int = 64, chunk_bytes: int = CHUNK_BYTES) -> None:
        if max_entries < 1:
            raise ValueError("the digest cache needs room for at least one entry")
        self.max_entries = max_entries
        self.chunk_bytes = chunk_bytes
        self.hashed = 0  # files actually read, for tests and logs
        self._entries: OrderedDict[tuple[str, int, int], str] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def sha256(self, path: Path) -> str:
        """Hex digest of `path`, from the cache when the file is unchanged."""
        st = os.stat(path)
        key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return hit
        hexdigest = file_sha256(Path(path), self.chunk_bytes)
        with self._lock:
            self.hashed += 1
            self._entries[key] = hexdigest
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return hexdigest

    def verify(self, path: Path, expected_hex: str) -> str:
        """`sha256:<hex>` of the file when it matches `expected_hex`; raises otherwise.

        FileNotFoundError passes through: a missing file may yet appear (retried later),
        while a wrong digest never fixes itself.
        """
        actual = self.sha256(path)
        if actual != expected_hex.lower():
            raise UntrustedArtifact(Path(path), expected_hex.lower(), actual)
        return f"sha256:{actual}"
