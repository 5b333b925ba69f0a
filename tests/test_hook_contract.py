"""Meta-test: every hook has a docstring, a documented signature and a test that uses it."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from siem_gad import hookspecs
from siem_gad.plugins import HOOK_NAMES

ROOT = Path(__file__).resolve().parents[1]


def test_hooks_are_found():
    assert {"register_sources", "register_detectors", "enrich_alert", "register_commands"} <= HOOK_NAMES


@pytest.mark.parametrize("hook", sorted(HOOK_NAMES))
def test_hook_has_docstring(hook: str):
    doc = inspect.getdoc(getattr(hookspecs, hook))
    assert doc and len(doc) > 40, f"hook {hook} needs a docstring saying what it is for"


@pytest.mark.parametrize("hook", sorted(HOOK_NAMES))
def test_hook_signature_is_documented(hook: str):
    signature = f"def {hook}({', '.join(inspect.signature(getattr(hookspecs, hook)).parameters)})"
    assert signature in (ROOT / "docs" / "plugins.md").read_text(), f"docs/plugins.md must document `{signature}`"


def hook_tests(hook: str) -> list[str]:
    """Test functions named `test_<hook>...` whose own source implements or calls the hook."""
    found = []
    for path in (ROOT / "tests").glob("test_*.py"):
        if path.name == Path(__file__).name:
            continue
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef) and node.name.startswith(f"test_{hook}"):
                if re.search(rf"\b{hook}\b", ast.get_source_segment(source, node) or ""):
                    found.append(f"{path.name}::{node.name}")
    return found


@pytest.mark.parametrize("hook", sorted(HOOK_NAMES))
def test_hook_is_exercised_by_a_test(hook: str):
    assert hook_tests(hook), f"no test named test_{hook}_... implements or calls hook {hook}"


SECTION_OF_KIND = {"sources": "Sources", "graph_builders": "Graph builders", "detectors": "Detectors", "sinks": "Sinks"}


def component_sections(text: str) -> dict[tuple[str, str], str]:
    """{(kind, component name): the text of its `###` section plus its kind's introduction, or
    of its row in the kind's table} from docs/configuration.md; a heading may name several
    components (`vae`, `aegmm`)."""
    sections: dict[tuple[str, str], str] = {}
    for kind, title in SECTION_OF_KIND.items():
        part = re.search(rf"^## {title}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
        assert part, f"docs/configuration.md has no '## {title}' section"
        body = part.group(1)
        intro = body.split("\n### ", 1)[0]
        for match in re.finditer(r"^\| `([a-z_0-9]+)` \|(.*)$", intro, re.M):  # a component described in a table row
            sections[(kind, match.group(1))] = match.group(2)
        for block in body.split("\n### ")[1:]:
            heading, _, rest = block.partition("\n")
            for name in re.findall(r"`([a-z_0-9]+)`", heading.split("(")[0]):
                sections[(kind, name)] = intro + rest
    return sections


def documented_keys(section: str, text: str) -> set[str]:
    """Keys in backquotes (or the first part of a nested one, `retry.attempts`); a section that
    points at the shared connection keys gets those too."""
    keys = set(re.findall(r"`([a-z_][a-z0-9_]*)[.`]", section))
    if "connection keys" in section.lower():
        shared = re.search(r"^### Connection keys.*?\n(.*?)(?=^##)", text, re.S | re.M)
        keys |= set(re.findall(r"`([a-z_][a-z0-9_]*)[.`]", shared.group(1) if shared else ""))
    return keys


def test_every_built_in_component_key_is_documented_in_its_own_section():
    """docs/configuration.md names every parameter of every built-in source, graph builder,
    detector and sink in that component's own section (or its kind's introduction), so a new
    key cannot ship undocumented and a key cannot pass by appearing under another component."""
    from siem_gad.plugins import load_host

    host = load_host(entry_points=False)
    text = (ROOT / "docs" / "configuration.md").read_text()
    sections = component_sections(text)
    missing = []
    for kind in SECTION_OF_KIND:
        for name, info in host.components(kind).items():
            section = sections.get((kind, name))
            if section is None:
                missing.append(f"{kind} {name}: no section")
                continue
            keys = documented_keys(section, text)
            missing += [f"{kind} {name}: {key}" for key in info.cls.Params.model_fields if key not in keys]
    assert not missing, f"keys missing from their section of docs/configuration.md: {missing}"


def test_the_section_check_finds_a_key_documented_only_elsewhere():
    text = ("## Sources\n\n### `a`\n\n| `alpha` | 1 |\n\n### `b`\n\n| `beta` | 2 |\n"
            "## Graph builders\n## Detectors\n## Sinks\n")
    sections = component_sections(text)
    assert "alpha" in documented_keys(sections[("sources", "a")], text)
    assert "beta" not in documented_keys(sections[("sources", "a")], text)


def test_every_module_a_built_in_component_warms_ray_workers_with_exists():
    """`worker_imports` (what a Ray worker imports before its first task) names real modules:
    a typo would only ever cost a warning and the time it was meant to save."""
    import importlib.util

    from siem_gad.plugins import load_host

    host = load_host(entry_points=False)
    named = {module for kind in ("sources", "graph_builders", "detectors")
             for info in host.components(kind).values() for module in info.cls.worker_imports}
    assert {"siem_gad.detectors.gcn_torch", "siem_gad.detectors.forest_kernels", "siem_gad.graphs.kernels"} <= named
    assert [module for module in sorted(named) if importlib.util.find_spec(module) is None] == []
