"""What every pluggable component shares: validated parameters and a name in the config."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from .plugins import PluginHost
    from .state import StateStore


class Params(BaseModel):
    """Base for a component's parameters; unknown keys are errors (typos are caught)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


class Component:
    """Base of sources, graph builders and sinks.

    Subclasses declare `Params` (a pydantic model); the host validates the config against it
    and calls `cls(**params)`, then `bind()` with the config key and the state store (for a
    dead-letter queue, or files under `state_dir`).
    """

    Params: ClassVar[type[Params]] = Params
    # Modules its work imports lazily on first use (pandas, numba kernels): a new Ray worker
    # imports them ahead of its first task (`execution.RayExecutor.warm`).
    worker_imports: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **params: object) -> None:
        self.params = self.Params.model_validate(params)
        self.name = type(self).__name__
        self.state: StateStore | None = None
        self.host: PluginHost | None = None

    def bind(self, name: str, state: "StateStore", host: "PluginHost | None" = None) -> "Component":
        self.name = name
        self.state = state
        self.host = host
        return self

    def detached(self, **overrides: object) -> "Component":
        """A copy with the same parameters (and `overrides`) and name, but no state store, host or
        open connection: what goes to another process (a Ray worker), which opens its own."""
        copy = type(self)(**{**self.params.model_dump(), **overrides})
        copy.name = self.name
        return copy

    @property
    def state_dir(self) -> Path | None:
        return self.state.dir if self.state is not None else None

    def setup(self) -> list[str]:
        """Create what the component needs outside siem-gad (index templates, directories).

        Called by `siem-gad setup`; must be safe to run again. Returns one line per thing
        it created or checked, for the command's output.
        """
        return []

    def start(self) -> None:
        """Start background work (listeners) before the first pass; `close()` stops it."""

    def close(self) -> None:
        """Release connections or files; called once when the host shuts down."""
