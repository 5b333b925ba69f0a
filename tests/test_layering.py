"""The house rules that keep modules small and honest, checked on the source with `ast`."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "siem_gad"


def private_imports(root: Path) -> list[str]:
    """`from x import _name` across modules: a private name another module depends on."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                found += [f"{path.relative_to(root.parent)}:{node.lineno}: {alias.name} from {node.module}"
                          for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    return found


def test_no_module_imports_a_private_name_of_another():
    assert private_imports(SRC) == [], "make the name public in a module of its own"


def test_the_check_finds_a_private_import(tmp_path: Path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("def _helper():\n    return 1\n")
    (package / "b.py").write_text("from .a import _helper\n")
    assert private_imports(package) == ["pkg/b.py:1: _helper from a"]


def test_config_does_not_import_components_it_configures():
    """config.py is the schema: it must not pull in the Kibana client or any source or sink."""
    tree = ast.parse((SRC / "config.py").read_text(encoding="utf-8"))
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {m for m in modules if m.split(".")[0] in ("elastic", "sources", "sinks", "detectors", "graphs")}
