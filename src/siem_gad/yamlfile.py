"""YAML loading with line numbers, `${VAR}` interpolation and precise error messages.

Every error names the file, the line where it can be found, and the key path
(`jobs.network.window`), so that a user never has to guess where a problem is.

The loader is bounded against hostile files: at most `MAX_FILE_BYTES` of text, and at most
`MAX_NODES` values once aliases are expanded (a "billion laughs" file of nested aliases is a few
hundred bytes that expand to billions of values), and no alias that contains itself. The
check runs on PyYAML's node graph, where an alias is one shared node, before anything is
expanded or constructed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import yaml

if TYPE_CHECKING:
    from pydantic import ValidationError

# libyaml's parser when PyYAML was built with it (several times faster; same nodes and marks)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_FILE_BYTES = 4 << 20
MAX_NODES = 200_000
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

KeyPath = tuple[str | int, ...]


def format_path(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


@dataclass
class Problem:
    file: Path
    path: KeyPath
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else f"{self.file}"
        return f"{where}: {format_path(self.path)}: {self.message}"


class ConfigError(Exception):
    """One or more problems in a configuration or rule file."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass
class YamlDocument:
    """Parsed YAML plus where each key path was written, for error messages."""

    file: Path
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, path: KeyPath) -> int | None:
        # Fall back to the closest parent that has a line (pydantic paths may point at a
        # key that is missing, whose parent is the best place to look).
        for cut in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:cut]))
            if line is not None:
                return line
        return None

    def problem(self, path: KeyPath, message: str) -> Problem:
        return Problem(self.file, tuple(path), message, self.line_of(tuple(path)))

    def validation_problems(self, error: "ValidationError", prefix: KeyPath = ()) -> list[Problem]:
        """A pydantic validation error as problems with file, line and key path, worded for
        people who write YAML rather than Python."""
        problems = []
        for item in error.errors():
            path = tuple(prefix) + tuple(item["loc"])
            message = item["msg"]
            if item["type"] == "extra_forbidden":
                message = "unknown key (check the spelling; see docs/configuration.md)"
            elif item["type"] == "missing":
                message = "required key is missing"
            elif "input" in item and item["type"] not in ("dict_type", "model_type"):
                message = f"{message} (got {item['input']!r})"
            problems.append(self.problem(path, message))
        return problems


def check_expansion(file: Path, root: yaml.Node) -> None:
    """Refuse a node graph that expands to more than MAX_NODES values, or holds an alias to
    one of its own ancestors (which would expand forever)."""
    sizes: dict[int, int] = {}
    ancestors: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in ancestors:
            raise ConfigError([Problem(file, (), "a YAML alias refers to a value that contains it (recursive alias)",
                                       node.start_mark.line + 1)])
        ancestors.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        ancestors.discard(key)
        if total > MAX_NODES:
            raise ConfigError([Problem(file, (), f"YAML expands to more than {MAX_NODES} values through aliases "
                                                 "(an alias bomb?); write the values out or use fewer aliases",
                                       node.start_mark.line + 1)])
        sizes[key] = total
        return total

    size(root)


def _collect_lines(node: yaml.Node, path: KeyPath, out: dict[KeyPath, int]) -> None:
    # setdefault: a key's own line wins over the line where its value starts.
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = path + (key_node.value,)
            out[child] = key_node.start_mark.line + 1
            _collect_lines(value_node, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _collect_lines(item, path + (index,), out)


def refuse_non_specific_tags(file: Path, text: str) -> None:
    """Refuse YAML's non-specific tag `!`: libyaml reads `a: !` as an empty string and PyYAML's
    own parser as null, so one file would mean two configurations (found by tests/test_fuzz.py).
    No key needs it: a value that must stay text is quoted. Files without a `!` (nearly all)
    are not parsed a second time."""
    if "!" not in text:
        return
    for event in yaml.parse(text, Loader=SAFE_LOADER):
        if getattr(event, "tag", None) == "!":
            raise ConfigError([Problem(file, (), "the non-specific tag '!' is not allowed (YAML parsers read it "
                                                 "differently); quote the value instead", event.start_mark.line + 1)])


def load_yaml(file: Path, environ: dict[str, str] | None = None) -> YamlDocument:
    """Read a YAML file, interpolate `${VAR}` / `${VAR:-default}` in string values."""
    file = Path(file)
    try:
        size = file.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError([Problem(file, (), f"file is {size} bytes; configuration and rule files are limited to "
                                                 f"{MAX_FILE_BYTES} bytes")])
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(file, (), "file not found")]) from None
    except IsADirectoryError:
        raise ConfigError([Problem(file, (), "is a directory, not a YAML file")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(file, (), f"not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    try:
        refuse_non_specific_tags(file, text)
        loader = SAFE_LOADER(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                check_expansion(file, node)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem(file, (), f"invalid YAML: {reason}", line)]) from None
    doc = YamlDocument(file, data)
    if node is not None:
        _collect_lines(node, (), doc.lines)
    problems: list[Problem] = []
    doc.data = _interpolate(doc.data, (), environ if environ is not None else dict(os.environ), doc, problems)
    if problems:
        raise ConfigError(problems)
    return doc


def _interpolate(value: Any, path: KeyPath, environ: dict[str, str], doc: YamlDocument, problems: list[Problem]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, path + (k,), environ, doc, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, path + (i,), environ, doc, problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        problems.append(doc.problem(path, f"environment variable {name} is not set (write ${{{name}:-default}} to give a default)"))
        return ""

    return _VAR.sub(replace, value)
