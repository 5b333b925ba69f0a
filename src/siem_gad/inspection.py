"""Loading a config with its plugins and rules, and finding every problem in them.

Kept apart from `pipeline` so that `siem-gad check` imports no more than validation needs:
the config models, the plugin host and the rules, not the pass machinery.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import AppConfig, load_config, validate_components
from .plugins import PluginHost, load_host, plugins_directory
from .rules import RuleSet, load_rules
from .yamlfile import ConfigError


@dataclass
class Inspection:
    """A config with its plugins and rules loaded, and every problem found in them."""

    config: AppConfig
    host: PluginHost
    rules: RuleSet | None
    problems: list


def inspect_config(config_path: str | Path, *, plugins_dir: Path | None = None,
                   state_dir: Path | None = None) -> Inspection:
    """Load a config, its plugins and its rules, and collect every problem (component types
    and parameters, rules) instead of stopping at the first kind: what `App.open` refuses and
    `siem-gad check` reports. Raises ConfigError only when the config file itself is invalid."""
    config = load_config(config_path)
    if state_dir is not None:
        config.state_dir = Path(state_dir).resolve()
    host = load_host(plugins_directory(plugins_dir, config.plugins_path), config.plugins)
    problems = list(validate_components(config, host))
    rules = None
    try:
        rules = load_rules(config)
    except ConfigError as exc:
        problems.extend(exc.problems)
    return Inspection(config, host, rules, problems)
