"""Modules imported when first used, so that light commands never pay for them.

`np = lazy_import("numpy")` at the top of a module gives a module object whose code runs on
the first attribute read (the standard library's `importlib.util.LazyLoader`); afterwards it
is the ordinary module, with no cost per access. The component modules that `siem-gad check`
imports to validate their parameters use it, so validating a config loads no numpy
(`tests/test_cli.py` fails when it does).

Python 3.11's LazyLoader is not safe against two threads reading the first attribute at the
same moment, so `load_now()` runs before the scheduler starts any job or listener thread.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

LAZY_MODULES = ("numpy",)


def lazy_import(name: str) -> ModuleType:
    """The module `name`: the real one if already imported, else one that loads on first use."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


def load_now() -> None:
    """Finish loading every lazily imported module (one attribute read each)."""
    for name in LAZY_MODULES:
        getattr(importlib.import_module(name), "__name__")
