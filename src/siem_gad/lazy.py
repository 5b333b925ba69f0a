"""Modules imported when first used, for the short commands that never need them.

`np = lazy_import("numpy")` at the top of a module gives the ordinary numpy module, except in
a process that called `light_start_up()` first: there it is a module object whose code runs
on the first attribute read (the standard library's `importlib.util.LazyLoader`). The command
line calls it for `check`, `status`, `plugins` and `--help`, so validating a config imports
the component modules it names but runs no numpy (`tests/test_cli.py` fails when it does).

Only those commands, because Python 3.11's LazyLoader is not safe when two threads read the
first attribute at the same moment: the second sees a half-initialised numpy. Every process
that runs jobs, trains models or hosts Ray workers imports numpy normally.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

_light = False


def light_start_up() -> None:
    """From now on `lazy_import` defers the modules it is asked for (single-threaded
    short-lived commands only; see the module docstring)."""
    global _light
    _light = True


def lazy_import(name: str) -> ModuleType:
    """The module `name`; loaded on first use after `light_start_up()`, else now."""
    if name in sys.modules:  # not import_module: reading its __spec__ would load a lazy one
        return sys.modules[name]
    if not _light:
        return importlib.import_module(name)
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
