"""Meta-test: every hook has a docstring, a documented signature and a test that uses it."""

from __future__ import annotations

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


@pytest.mark.parametrize("hook", sorted(HOOK_NAMES))
def test_hook_is_exercised_by_a_test(hook: str):
    tests = [p for p in (ROOT / "tests").glob("test_*.py") if p.name != Path(__file__).name]
    users = [p.name for p in tests if re.search(rf"\b{hook}\b", p.read_text())]
    assert users, f"no test implements or calls hook {hook}"


def test_every_built_in_component_key_is_documented():
    """docs/configuration.md names every parameter of every built-in source, graph builder,
    detector and sink, so a new key cannot ship undocumented."""
    from siem_gad.plugins import COMPONENT_HOOKS, load_host

    host = load_host(entry_points=False)
    # a key in backquotes, or the first part of a nested one (`retry.attempts`)
    documented = set(re.findall(r"`([a-z_][a-z0-9_]*)[.`]", (ROOT / "docs" / "configuration.md").read_text()))
    missing = sorted(f"{kind} {name}: {key}" for kind in COMPONENT_HOOKS for name, info in host.components(kind).items()
                     if hasattr(info.cls, "Params")  # log parsers take no parameters
                     for key in info.cls.Params.model_fields if key not in documented)
    assert not missing, f"keys missing from docs/configuration.md: {missing}"
