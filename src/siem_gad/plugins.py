"""Plugin discovery, registration and fault isolation.

Plugins come from four places, in this order: the built-ins (`DEFAULT_PLUGINS`, registered
through the same hooks as everyone else), the `siem_gad` entry-point group of installed
packages, every `*.py` file in the plugins directory, and module paths listed under `plugins:`
in the config. A plugin that fails to import, implements a hook that does not exist (a typo),
or raises inside a hook is recorded in `PluginHost.failures` with its name and left out; the
host and the other plugins keep working.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import logging
import sys
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable

import pluggy

from . import hookspecs
from .builtins import BUILTIN_COMPONENTS, declared_plugin

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "siem_gad"
# The built-ins that add CLI commands: all the command line loads to list its commands, so that
# `siem-gad --help` imports none of numpy, pandas, torch or pydantic.
COMMAND_PLUGINS = ("siem_gad.commands.deadletter", "siem_gad.commands.kibana", "siem_gad.commands.triage",
                   "siem_gad.commands.ui")
DEFAULT_PLUGINS = (
    "siem_gad.sources.csv_source",
    "siem_gad.sources.simulate",
    "siem_gad.sources.elasticsearch",
    "siem_gad.sources.syslog",
    "siem_gad.syslog.parsers",
    "siem_gad.graphs.bipartite",
    "siem_gad.graphs.profile",
    "siem_gad.graphs.host_flow",
    "siem_gad.graphs.temporal",
    "siem_gad.detectors.iforest",
    "siem_gad.detectors.gcn_hmm",
    "siem_gad.detectors.vae",
    "siem_gad.detectors.gmm",
    "siem_gad.detectors.deep_sad",
    "siem_gad.detectors.lstm_ae",
    "siem_gad.detectors.hetero_gnn",
    "siem_gad.detectors.cat_gnn",
    "siem_gad.detectors.graph_ae",
    "siem_gad.detectors.rare_links",
    "siem_gad.detectors.beacon",
    "siem_gad.sinks.jsonl",
    "siem_gad.sinks.elasticsearch",
    "siem_gad.sinks.stdout",
    *COMMAND_PLUGINS,
)
COMPONENT_HOOKS = {
    "sources": "register_sources",
    "graph_builders": "register_graph_builders",
    "detectors": "register_detectors",
    "sinks": "register_sinks",
    "log_parsers": "register_log_parsers",
}
HOOK_NAMES = frozenset(
    name for name, value in vars(hookspecs).items() if inspect.isfunction(value) and hasattr(value, "siem_gad_spec")
)


class ComponentUnavailable(Exception):
    """A component registered as a `"module:Class"` reference whose module cannot be imported
    or does not hold that class."""


@dataclass
class Component:
    """One registered component: its class, or a `"module:Class"` reference imported the
    first time `cls` is read (how the built-ins stay unimported until a config uses them)."""

    kind: str
    name: str
    target: type | str
    plugin: str

    @property
    def cls(self) -> type:
        if isinstance(self.target, str):
            module_name, _, attr = self.target.partition(":")
            try:
                self.target = getattr(importlib.import_module(module_name), attr)
            except Exception as exc:  # noqa: BLE001 - any import error is reported, not fatal
                what = f"{self.kind[:-1].replace('_', ' ')} {self.name!r} of plugin {self.plugin!r}"
                raise ComponentUnavailable(f"{what} cannot be loaded from {self.target}: {type(exc).__name__}: {exc}") from exc
        return self.target


@dataclass
class PluginInfo:
    name: str
    origin: str
    location: str
    hooks: list[str] = field(default_factory=list)
    components: dict[str, list[str]] = field(default_factory=dict)
    status: str = "loaded"
    error: str | None = None
    version: str | None = None  # the distribution's (entry points), siem-gad's (built-ins), or `__version__`

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "origin": self.origin,
            "location": self.location,
            "status": self.status,
            "hooks": self.hooks,
            "components": self.components,
            "error": self.error,
        }


@dataclass
class PluginFailure:
    plugin: str
    stage: str
    error: str
    detail: str = ""

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} failed in {self.stage}: {self.error}"


class PluginHost:
    """A pluggy PluginManager plus the component registries built from its hooks."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("siem_gad")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []
        self._registries: dict[str, dict[str, Component]] | None = None

    # ----------------------------------------------------------------- discovery
    def load(self, *, plugins_dir: Path | None = None, modules: Iterable[str] = (), entry_points: bool = True,
             builtins: Iterable[str] = DEFAULT_PLUGINS) -> None:
        for module_name in builtins:
            self._load_module(module_name, origin="builtin")
        if entry_points:
            self._load_entry_points()
        if plugins_dir is not None and plugins_dir.is_dir():
            for path in sorted(plugins_dir.glob("*.py")):
                if not path.name.startswith("_"):
                    self._load_file(path)
        for module_name in modules:
            self._load_module(module_name, origin="config")
        self._registries = None

    def _load_module(self, module_name: str, origin: str) -> None:
        if origin == "builtin" and module_name in BUILTIN_COMPONENTS:
            location = str(Path(__file__).parent.joinpath(*module_name.split(".")[1:])) + ".py"
            self.register(declared_plugin(module_name, COMPONENT_HOOKS), module_name, origin, location)
            return
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - any import error is reported, not fatal
            self._fail(module_name, origin, module_name, "import", exc)
            return
        self.register(module, module_name, origin, getattr(module, "__file__", module_name) or module_name)

    def _load_entry_points(self) -> None:
        for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = entry.dist.name if entry.dist else "?"
            try:
                obj = entry.load()
            except Exception as exc:  # noqa: BLE001
                self._fail(entry.name, f"entry point ({dist})", entry.value, "import", exc)
                continue
            if self.register(obj, entry.name, f"entry point ({dist})", entry.value) and entry.dist:
                self.plugins[entry.name].version = entry.dist.version

    def _load_file(self, path: Path) -> None:
        name = path.stem
        module_name = f"siem_gad_local_plugins.{name}"
        try:
            spec = importlib.util.spec_from_file_location(module_name, path)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001
            sys.modules.pop(module_name, None)
            self._fail(name, "plugins dir", str(path), "import", exc)
            return
        self.register(module, name, "plugins dir", str(path))

    def register(self, obj: Any, name: str, origin: str = "code", location: str = "") -> bool:
        """Register a plugin object after checking its hook names; False when rejected."""
        if name in self.plugins and self.plugins[name].status == "loaded":
            self._fail(name, origin, location, "registration", RuntimeError(f"a plugin named {name!r} is already loaded"))
            return False
        hooks = []
        for attr in dir(obj):
            if self.pm.parse_hookimpl_opts(obj, attr) is None:
                continue
            if attr not in HOOK_NAMES:
                suggestion = difflib.get_close_matches(attr, HOOK_NAMES, n=1)
                hint = f" (did you mean {suggestion[0]!r}?)" if suggestion else ""
                error = ValueError(f"implements unknown hook {attr!r}{hint}")
                self._fail(name, origin, location, "registration", error, status="rejected")
                return False
            hooks.append(attr)
        try:
            self.pm.register(obj, name=name)
        except Exception as exc:  # noqa: BLE001 - pluggy validates signatures
            self._fail(name, origin, location, "registration", exc, status="rejected")
            return False
        version = getattr(obj, "__version__", None)
        if version is None and origin == "builtin":
            from . import __version__ as version
        self.plugins[name] = PluginInfo(name, origin, location, sorted(hooks), version=str(version) if version else None)
        self._registries = None
        return True

    def _fail(self, name: str, origin: str, location: str, stage: str, exc: BaseException, status: str = "failed") -> None:
        detail = "".join(traceback.format_exception(exc))
        failure = PluginFailure(name, stage, f"{type(exc).__name__}: {exc}", detail)
        self.failures.append(failure)
        if name not in self.plugins or self.plugins[name].status != "loaded":
            self.plugins[name] = PluginInfo(name, origin, location, status=status, error=failure.error)
        log.error("%s", failure)
        log.debug("%s", detail)

    # ----------------------------------------------------------------- components
    def components(self, kind: str) -> dict[str, Component]:
        if self._registries is None:
            self._registries = self._build_registries()
        return self._registries[kind]

    def component(self, kind: str, name: str) -> type:
        registry = self.components(kind)
        if name not in registry:
            raise KeyError(f"no {kind[:-1].replace('_', ' ')} named {name!r} (available: {', '.join(sorted(registry))})")
        return registry[name].cls

    def _build_registries(self) -> dict[str, dict[str, Component]]:
        registries: dict[str, dict[str, Component]] = {kind: {} for kind in COMPONENT_HOOKS}
        for info in self.plugins.values():
            info.components = {}
        for kind, hook in COMPONENT_HOOKS.items():
            registry = registries[kind]

            def make_register(plugin: str, kind: str = kind, registry: dict = registry) -> Callable[[str, type | str], None]:
                def register(name: str, cls: type | str) -> None:
                    if name in registry:
                        raise ValueError(f"{kind[:-1]} name {name!r} is already registered by plugin {registry[name].plugin!r}")
                    if isinstance(cls, str) and ":" not in cls:
                        raise ValueError(f"{kind[:-1]} {name!r}: a reference must read 'module:Class', not {cls!r}")
                    registry[name] = Component(kind, name, cls, plugin)
                    self.plugins[plugin].components.setdefault(kind, []).append(name)

                return register

            for impl in getattr(self.pm.hook, hook).get_hookimpls():
                try:
                    impl.function(register=make_register(impl.plugin_name))
                except Exception as exc:  # noqa: BLE001
                    self._report(impl.plugin_name, hook, exc)
        return registries

    # ----------------------------------------------------------------- event hooks
    def implements(self, hook: str) -> bool:
        """True when some plugin implements `hook` (the Ray engine keeps `enrich_events` in the
        driver, where the plugins are loaded, and only then reads there)."""
        return bool(getattr(self.pm.hook, hook).get_hookimpls())

    def call_each(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of `hook` separately; a raising plugin is reported and skipped."""
        results = []
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):  # registration order
            try:
                result = impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except Exception as exc:  # noqa: BLE001
                self._report(impl.plugin_name, hook, exc)
                continue
            results.append((impl.plugin_name, result))
        return results

    def _report(self, plugin: str, hook: str, exc: BaseException) -> None:
        failure = PluginFailure(plugin, hook, f"{type(exc).__name__}: {exc}", "".join(traceback.format_exception(exc)))
        self.failures.append(failure)
        log.error("%s (the plugin was skipped; the job goes on)", failure)
        log.debug("%s", failure.detail)

    def describe(self) -> list[dict[str, Any]]:
        self.components("sources")  # make sure component lists are filled in
        return [info.as_dict() for info in self.plugins.values()]


def plugins_directory(option: Path | None, config_plugins_path: Path | None) -> Path:
    """The one rule for where local plugins live: `--plugins-dir DIR` when given (it replaces
    the directory beside the config); else the config's `plugins_dir` (default `plugins/`
    beside the config file); without a config, `plugins/` in the working directory. Every
    command, `register_commands` included, follows it."""
    if option is not None:
        return Path(option)
    if config_plugins_path is not None:
        return config_plugins_path
    return Path("plugins")


def config_argument(args: list[str]) -> Path | None:
    """The value of `-c`/`--config` in a command line, before click has parsed it (the plugin
    commands must be known before the command is chosen)."""
    for index, arg in enumerate(args):
        if arg in ("-c", "--config") and index + 1 < len(args):
            return Path(args[index + 1])
        if arg.startswith("--config="):
            return Path(arg.split("=", 1)[1])
    return None


def load_host(plugins_dir: Path | None = None, modules: Iterable[str] = (), entry_points: bool = True,
              builtins: Iterable[str] = DEFAULT_PLUGINS) -> PluginHost:
    """A host with the built-ins (`builtins`: all by default), entry points, the plugins
    directory and the config's modules loaded."""
    host = PluginHost()
    host.load(plugins_dir=plugins_dir, modules=modules, entry_points=entry_points, builtins=builtins)
    return host

