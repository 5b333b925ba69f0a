"""What every pluggable component shares: validated parameters and a name in the config."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class Params(BaseModel):
    """Base for a component's parameters; unknown keys are errors (typos are caught)."""

    model_config = ConfigDict(extra="forbid")


class Component:
    """Base of sources, graph builders and sinks.

    Subclasses declare `Params` (a pydantic model); the host validates the config against it
    and calls `cls(**params)`, then `bind()` with the config key and the state directory.
    """

    Params: ClassVar[type[Params]] = Params

    def __init__(self, **params: object) -> None:
        self.params = self.Params.model_validate(params)
        self.name = type(self).__name__
        self.state_dir: Path | None = None

    def bind(self, name: str, state_dir: Path) -> "Component":
        self.name = name
        self.state_dir = state_dir
        return self

    def close(self) -> None:
        """Release connections or files; called once when the host shuts down."""
