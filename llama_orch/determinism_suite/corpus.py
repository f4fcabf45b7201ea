"""The determinism corpus: load, validate and fingerprint `corpus.yaml` (OC-TEST-7003).

A case never changes once published; a new prompt or seed is a new id. The content hash covers
every case field, so a silent edit shows up as a changed hash next to an unchanged `version`
(the test pins both).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

CORPUS_PATH = Path(__file__).with_name("corpus.yaml")
MIN_CASES = 64
_SAMPLER_KEYS = ("temperature", "top_k", "top_p", "min_p")
_CASE_KEYS = {"id", "prompt", "seed", "sampler", "max_tokens", "stop"}
MAX_STOP = 4  # the OrchQueue v1 limit on stop sequences per task


class CorpusError(ValueError):
    """The corpus file breaks a rule (names the case and the rule)."""


@dataclass(frozen=True)
class Sampler:
    """A sampler profile's values (temperature 0 or top_k 1 is greedy)."""

    temperature: float
    top_k: int
    top_p: float
    min_p: float


@dataclass(frozen=True)
class Case:
    """One replayable request: prompt, fixed seed, named sampler profile, token budget and
    optional stop sequences."""

    id: str
    prompt: str
    seed: int
    profile: str  # a name from the corpus's `sampler_profiles`
    sampler: Sampler  # that profile's values (what direct mode sends)
    max_tokens: int
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.sampler.temperature == 0.0 or self.sampler.top_k == 1


@dataclass(frozen=True)
class Corpus:
    """A validated corpus with its declared version and content hash."""

    version: str
    sampler_profile_version: str  # version of the corpus's profile table (replica identity)
    cases: tuple[Case, ...]
    content_hash: str
    sampler_profiles: dict[str, Sampler] = field(default_factory=dict)
    ctx_budget: int = 2048  # the context each case is sized for (and asks for)

    def __len__(self) -> int:
        return len(self.cases)


def _profiles(raw: Any) -> dict[str, Sampler]:
    if not isinstance(raw, dict) or not raw:
        raise CorpusError("corpus needs a non-empty `sampler_profiles` mapping")
    out = {}
    for name, values in raw.items():
        if not isinstance(values, dict) or set(values) != set(_SAMPLER_KEYS):
            raise CorpusError(f"sampler profile {name}: needs exactly {', '.join(_SAMPLER_KEYS)}")
        out[str(name)] = Sampler(
            temperature=float(values["temperature"]),
            top_k=int(values["top_k"]),
            top_p=float(values["top_p"]),
            min_p=float(values["min_p"]),
        )
    return out


def _stop(raw: Any, cid: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if (
        not isinstance(raw, list)
        or not 1 <= len(raw) <= MAX_STOP
        or not all(isinstance(s, str) and 1 <= len(s) <= 64 for s in raw)
    ):
        raise CorpusError(f"case {cid}: stop must be 1..{MAX_STOP} strings of 1..64 characters")
    return tuple(raw)


def _case(raw: Any, index: int, profiles: dict[str, Sampler]) -> Case:
    if not isinstance(raw, dict):
        raise CorpusError(f"case #{index} is not a mapping")
    cid = raw.get("id")
    if not isinstance(cid, str) or not cid:
        raise CorpusError(f"case #{index} has no string id")
    unknown = sorted(set(raw) - _CASE_KEYS)
    if unknown:
        raise CorpusError(f"case {cid}: unknown field(s) {', '.join(unknown)}")
    prompt, seed, max_tokens = raw.get("prompt"), raw.get("seed"), raw.get("max_tokens")
    if not isinstance(prompt, str) or not prompt:
        raise CorpusError(f"case {cid}: prompt must be a non-empty string")
    if type(seed) is not int or seed < 0:
        raise CorpusError(f"case {cid}: seed must be a non-negative integer")
    if type(max_tokens) is not int or not 1 <= max_tokens <= 256:
        raise CorpusError(f"case {cid}: max_tokens must be an integer in 1..256")
    profile = raw.get("sampler")
    if profile not in profiles:
        defined = ", ".join(sorted(profiles))
        raise CorpusError(f"case {cid}: sampler must name a profile ({defined})")
    return Case(
        id=cid,
        prompt=prompt,
        seed=seed,
        profile=profile,
        sampler=profiles[profile],
        max_tokens=max_tokens,
        stop=_stop(raw.get("stop"), cid),
    )


def _canonical(case: Case) -> dict[str, Any]:
    """A case as plain data, spelled out so that the hash follows the file, not the classes."""
    return {
        "id": case.id,
        "prompt": case.prompt,
        "seed": case.seed,
        "profile": case.profile,
        "sampler": asdict(case.sampler),
        "max_tokens": case.max_tokens,
        "stop": list(case.stop),
    }


def content_hash(cases: tuple[Case, ...]) -> str:
    """sha256 over the canonical JSON of every case (profile values included), in file order."""
    canonical = json.dumps(
        [_canonical(c) for c in cases], sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def parse_corpus(doc: Any, *, min_cases: int = MIN_CASES) -> Corpus:
    """Validate a loaded YAML document; CorpusError on the first broken rule."""
    if not isinstance(doc, dict):
        raise CorpusError("corpus must be a mapping")
    version = doc.get("version")
    profile = doc.get("sampler_profile_version")
    if not isinstance(version, str) or not version:
        raise CorpusError("corpus needs a string `version`")
    if not isinstance(profile, str) or not profile:
        raise CorpusError("corpus needs a string `sampler_profile_version`")
    profiles = _profiles(doc.get("sampler_profiles"))
    ctx_budget = doc.get("ctx_budget", 2048)
    if type(ctx_budget) is not int or ctx_budget < 1:
        raise CorpusError("`ctx_budget` must be a positive integer")
    raw_cases = doc.get("cases")
    if not isinstance(raw_cases, list):
        raise CorpusError("corpus needs a `cases` list")
    cases = tuple(_case(raw, i, profiles) for i, raw in enumerate(raw_cases))
    ids = [c.id for c in cases]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise CorpusError(f"duplicate case ids: {', '.join(dupes)}")
    if len(cases) < min_cases:
        raise CorpusError(f"corpus has {len(cases)} cases; at least {min_cases} are required")
    return Corpus(version, profile, cases, content_hash(cases), profiles, ctx_budget)


def load_corpus(path: Path = CORPUS_PATH, *, min_cases: int = MIN_CASES) -> Corpus:
    """Read and validate a corpus file (the shipped one by default)."""
    with path.open(encoding="utf-8") as fh:
        return parse_corpus(yaml.safe_load(fh), min_cases=min_cases)
