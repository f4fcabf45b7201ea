"""The one registry of checks: which check proves which requirement, and what it needs.

Every check is one self-describing `Check` value: its stable id, the requirement IDs it proves,
its kind, the role it plays (judging behaviour, or only the shape of answers), the optional
features a target must claim for it to apply, the facts and keys it needs from the target
description, and the requirements it stands on (when one of those is broken, this check cannot
judge its own). Collectors (`harness.collectors`) turn every source into Check values: Gherkin
scenarios, Pact interactions, OpenAPI operations, plain check functions (`@check`),
determinism cases and the reference's white-box tests. `llorch spec coverage`,
`llorch check --list`, the runner, the verdicts and the reports all read this one registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., Any])


class Kind(StrEnum):
    """How a check works; reported per check (compliance.json `kind`)."""

    BDD = "bdd"
    CONTRACT = "contract"
    SCHEMA = "schema"
    METRICS = "metrics"
    TEST = "test"
    PROPERTY = "property"
    DETERMINISM = "determinism"
    WHITE_BOX = "white-box"


BLACK_BOX_KINDS = frozenset(Kind) - {Kind.WHITE_BOX}


class Role(StrEnum):
    """Whether a check judges what a requirement asks for, or only the shape of answers.

    A requirement passes only when its behaviour checks ran to a result; a shape check (a
    schema or contract check of the answers) passing beside errored behaviour checks proves
    nothing about the behaviour. A requirement with only shape checks is judged by them.
    """

    BEHAVIOUR = "behaviour"
    SHAPE = "shape"


class Need(StrEnum):
    """What a check needs from the target description; without it the check cannot run."""

    MODEL_REF = "model_ref"  # a served model (facts.model_ref or --model-ref)
    IDENTITY = "identity"  # facts.engine_version and facts.model_digest
    TENANT_KEY = "tenant_key"  # a second tenant's key with a quota
    DATA_PLANE_KEY = "data_plane_key"  # a key limited to the data plane
    LOG = "log"  # the target's JSON-lines log
    REFERENCE_CONFIG = "reference_config"  # the harness starts the target itself
    CATALOG_CA = "catalog_ca"  # a CA the target's trust policy trusts, and an allowed registry

    def how(self) -> str:
        return {
            Need.MODEL_REF: "give --model-ref, or --fact model_ref=PATH (facts.model_ref)",
            Need.IDENTITY: "give facts.engine_version and facts.model_digest (--fact NAME=PATH)",
            Need.TENANT_KEY: "give --tenant-key-env VAR naming a second tenant's key",
            Need.DATA_PLANE_KEY: "give --data-plane-key-env VAR naming a data-plane-only key",
            Need.LOG: "give --target-log FILE, the target's JSON-lines log",
            Need.REFERENCE_CONFIG: "only where the harness starts the target (embedded run)",
            Need.CATALOG_CA: "give catalog.registry, catalog.ca_cert_env and catalog.ca_key_env "
            "in the target description (a test CA the target trusts)",
        }[self]


@dataclass(frozen=True)
class Check:
    """One check, described once; the id is stable across runs and installs."""

    id: str
    kind: Kind
    requirements: tuple[str, ...]
    family: str
    role: Role = Role.BEHAVIOUR
    features: tuple[str, ...] = ()
    needs: tuple[Need, ...] = ()
    stands_on: tuple[str, ...] = ()
    slow: bool = False
    description: str = ""
    source: str = ""  # where it is defined: file:line, pact key, operation id

    def __post_init__(self) -> None:
        if not self.id or not self.requirements:
            raise RegistryError(f"check {self.id!r} names no requirement")
        overlap = set(self.requirements) & set(self.stands_on)
        if overlap:
            raise RegistryError(f"check {self.id} stands on its own requirements {overlap}")


class RegistryError(ValueError):
    """A check is malformed, duplicated, or names an unknown requirement (collection fails)."""


@dataclass
class Registry:
    """All checks, in collection order, by id."""

    checks: dict[str, Check] = field(default_factory=dict)

    def add(self, check: Check) -> None:
        old = self.checks.get(check.id)
        if old is not None and old != check:
            raise RegistryError(
                f"two checks share the id {check.id!r}: {old.source}, {check.source}"
            )
        self.checks[check.id] = check

    def extend(self, checks: Iterable[Check]) -> Registry:
        for c in checks:
            self.add(c)
        return self

    def __iter__(self) -> Iterator[Check]:
        return iter(self.checks.values())

    def __len__(self) -> int:
        return len(self.checks)

    def __contains__(self, check_id: object) -> bool:
        return check_id in self.checks

    def get(self, check_id: str) -> Check | None:
        return self.checks.get(check_id)

    def of_kind(self, *kinds: Kind) -> list[Check]:
        return [c for c in self if c.kind in kinds]

    def proving(self, req_id: str) -> list[Check]:
        return [c for c in self if req_id in c.requirements]

    def validate(self, known: Iterable[str]) -> None:
        """Every requirement a check names or stands on must exist (unknown IDs fail here)."""
        known = set(known)
        bad: dict[str, list[str]] = {}
        for c in self:
            for req_id in (*c.requirements, *c.stands_on):
                if req_id not in known:
                    bad.setdefault(req_id, []).append(c.id)
        if bad:
            detail = "; ".join(
                f"{i} (named by {', '.join(sorted(ids))})" for i, ids in sorted(bad.items())
            )
            raise RegistryError(f"checks name unknown requirement IDs: {detail}")


# -- plain check functions ---------------------------------------------------------------------

CHECK_ATTR = "__llorch_check__"
_PLAIN: list[Check] = []


def check(
    *requirements: str,
    kind: Kind = Kind.TEST,
    role: Role = Role.BEHAVIOUR,
    features: Sequence[str] = (),
    needs: Sequence[Need] = (),
    stands_on: Sequence[str] = (),
    slow: bool = False,
) -> Callable[[F], F]:
    """Register a check function in the registry, with the requirements it proves.

    The id is `<family>::<function name>`, the family the module's name without `test_`.
    """

    def decorate(fn: F) -> F:
        module = fn.__module__.rpartition(".")[2].removeprefix("test_")
        code = fn.__code__
        c = Check(
            id=f"{module}::{fn.__name__.removeprefix('test_')}",
            kind=kind,
            requirements=tuple(dict.fromkeys(requirements)),
            family=module,
            role=role,
            features=tuple(features),
            needs=tuple(needs),
            stands_on=tuple(stands_on),
            slow=slow,
            description=(fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "",
            source=f"{code.co_filename.rpartition('llama_orch/')[2] or code.co_filename}:"
            f"{code.co_firstlineno}",
        )
        setattr(fn, CHECK_ATTR, c)
        _PLAIN.append(c)
        return pytest.mark.req(*c.requirements)(fn)

    return decorate


def plain_checks() -> list[Check]:
    """The checks registered with `@check` so far (their modules must have been imported)."""
    return list(_PLAIN)
