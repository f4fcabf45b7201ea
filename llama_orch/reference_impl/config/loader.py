"""Read a YAML config file and validate it, with errors a person can act on.

Every failure is a `ConfigError` listing one issue per line as
`FILE:LINE: key.path[0].name: what was expected`, so that a broken config is fixed in one pass.
Strict mode rejects unknown keys; compat mode logs each one (with its path) and drops it.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from llama_orch.reference_impl.config._types import PATTERN_HINTS, ValidationMode
from llama_orch.reference_impl.config.model import OrchestratorConfig

logger = logging.getLogger("llama_orch.reference_impl.config")

Loc = tuple[str | int, ...]

# Rounds of "drop unknown keys, validate again" in compat mode; one is enough for these models.
_COMPAT_ROUNDS = 4


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config: where it is (key path, YAML line) and what was expected."""

    path: str
    message: str
    line: int | None = None
    kind: str = "invalid"

    def format(self, source: str) -> str:
        """One line: `source:line: path: message`; line and path are left out when unknown."""
        where = f"{source}:{self.line}" if self.line is not None else source
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(ValueError):
    """A config could not be read or is invalid; `issues` lists every problem found."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = list(issues)
        super().__init__("\n".join(issue.format(source) for issue in self.issues))


def load_config(
    path: str | os.PathLike[str], mode: ValidationMode | str | None = None
) -> OrchestratorConfig:
    """Load and validate a YAML config file.

    Args:
        path: The YAML file.
        mode: `strict` or `compat`; when None, the file's own `validation` key decides,
            else strict.

    Raises:
        ConfigError: The file is unreadable, not YAML, or not a valid config.
    """
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        issue = ConfigIssue("", f"cannot read file: {reason}", kind="io")
        raise ConfigError(source, [issue]) from None
    config = parse_config(text, source=source, mode=mode)
    config._source = Path(source).resolve()
    return config


def parse_config(
    text: str, *, source: str = "<string>", mode: ValidationMode | str | None = None
) -> OrchestratorConfig:
    """Validate config text; `source` names it in error messages. See `load_config`."""
    data, tree = _read_yaml(text, source)
    effective = _effective_mode(mode, data)
    for _ in range(_COMPAT_ROUNDS):
        try:
            return OrchestratorConfig.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
        unknown = [e for e in errors if e["type"] == "extra_forbidden"]
        if effective is not ValidationMode.COMPAT or not unknown:
            issues = sorted((_issue(e, tree) for e in errors), key=_by_line)
            raise ConfigError(source, issues) from None
        data = copy.deepcopy(data)
        for err in unknown:
            logger.warning("%s", _issue(err, tree, compat=True).format(source))
            _drop(data, err["loc"])
    raise ConfigError(source, [ConfigIssue("", "unknown keys could not be dropped")])


def _by_line(issue: ConfigIssue) -> int:
    return issue.line if issue.line is not None else 0


def format_path(loc: Loc) -> str:
    """Key path in dotted/indexed form: `pools[0].queue.full_policy`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("_", "a").replace("-", "a").isalnum() and not part[:1].isdigit():
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def _read_yaml(text: str, source: str) -> tuple[dict[str, Any], Any]:
    """Parse twice: safe loading for the data, round-trip loading for line numbers."""
    try:
        data = YAML(typ="safe", pure=True).load(text)
        tree = YAML(typ="rt").load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        issue = ConfigIssue("", f"invalid YAML: {problem}", line, "yaml")
        raise ConfigError(source, [issue]) from None
    if not isinstance(data, dict):
        got = "an empty document" if data is None else f"a {type(data).__name__}"
        msg = f"expected a mapping of config keys (at least `pools`), got {got}"
        raise ConfigError(source, [ConfigIssue("", msg, 1, "type")])
    return data, tree


def _effective_mode(mode: ValidationMode | str | None, data: dict[str, Any]) -> ValidationMode:
    if mode is not None:
        return ValidationMode(mode)
    declared = data.get("validation")
    if declared in {m.value for m in ValidationMode}:
        return ValidationMode(declared)
    return ValidationMode.STRICT


def _issue(err: Any, tree: Any, *, compat: bool = False) -> ConfigIssue:
    """Turn one pydantic error into a ConfigIssue with a readable path and expectation."""
    loc: Loc = tuple(err["loc"])
    on_key = bool(loc) and loc[-1] == "[key]"
    if on_key:
        loc = loc[:-1]
    kind = err["type"]
    if kind == "missing":
        message = "required key is missing"
    elif kind == "extra_forbidden":
        message = (
            "unknown key ignored (compat mode)"
            if compat
            else "unknown key; strict validation accepts only keys the schema defines"
        )
    elif kind == "config_rule":
        message = err["msg"]
    elif kind == "value_error":
        message = f"{err['msg'].removeprefix('Value error, ')}, got {_describe(err['input'])}"
    elif kind in {"model_type", "dict_type", "model_attributes_type"}:
        message = f"expected a mapping, got {_describe(err['input'])}"
    else:
        message = f"expected {_expectation(err)}, got {_describe(err['input'])}"
    if on_key:
        message = f"bad key: {message}"
    return ConfigIssue(format_path(loc), message, _line_for(tree, loc), kind)


def _expectation(err: Any) -> str:
    msg: str = err["msg"]
    if err["type"] == "string_pattern_mismatch":
        pattern = err.get("ctx", {}).get("pattern", "")
        return PATTERN_HINTS.get(pattern, f"a string matching {pattern}")
    if msg.startswith("Input should be "):
        return msg.removeprefix("Input should be ")
    return msg[:1].lower() + msg[1:]


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _line_for(tree: Any, loc: Loc) -> int | None:
    """1-based line of the deepest part of `loc` present in the round-trip tree."""
    line = getattr(getattr(tree, "lc", None), "line", None)
    node = tree
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line = node.lc.item(part)[0]
        else:
            break
        node = node[part]
    return line + 1 if line is not None else None


def _drop(data: Any, loc: Loc) -> None:
    """Delete the key at `loc` from nested dicts/lists, if it is still there."""
    node = data
    for part in loc[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(node, dict):
        node.pop(loc[-1], None)
