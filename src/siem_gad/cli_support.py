"""What every command of the CLI shares (built-in and plugin commands alike): the `-c` option,
loading a config or an app with errors as clean messages, and whether to draw progress bars."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import click

from .yamlfile import ConfigError

CONFIG_HELP = "Configuration file (YAML)."


class TimeParam(click.ParamType):
    """An ISO 8601 time, 'now' or a relative time ('-7d', '+7d') as an aware datetime; a bad
    one is a usage error naming the option."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        from .timeutil import parse_time

        try:
            return parse_time(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


TIME = TimeParam()


def config_option(required: bool = True, help: str = CONFIG_HELP) -> Callable:
    """The `-c/--config FILE` option."""
    return click.option("-c", "--config", type=click.Path(path_type=Path, dir_okay=False), required=required, help=help)


def load_config_or_fail(path: Path) -> Any:
    """The validated config, or exit 1 with every problem (file, line, key)."""
    from .config import load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise click.ClickException(f"invalid configuration:\n{exc}") from None


def open_app(ctx: click.Context, config: Path, state_dir: Path | None = None, writer: str | None = None) -> Any:
    """Config, plugins and rules loaded into an `App`, logging set from the config (the global
    options win); exit 1 with precise messages when they are invalid. A `writer` (the command's
    name) holds the state directory's lock until the command ends (`statelock`)."""
    from .logs import setup_logging
    from .pipeline import App
    from .statelock import StateInUse, lock_state

    options = ctx.find_root().obj or {}
    app_config = load_config_or_fail(config)
    setup_logging((options.get("log_level") or app_config.logging.level).upper(),
                  options.get("log_format") or app_config.logging.format)
    try:
        app = App.open(config, plugins_dir=options.get("plugins_dir"), state_dir=state_dir)
    except ConfigError as exc:
        raise click.ClickException(f"invalid configuration:\n{exc}") from None
    if writer:  # after App.open, which names an unusable state_dir precisely
        try:
            ctx.call_on_close(lock_state(app.config.state_path, writer).close)
        except StateInUse as exc:
            app.close()
            raise click.ClickException(str(exc)) from None
    return app


def progress_enabled() -> bool:
    """Progress bars only for a person at a terminal, never in logs or pipes."""
    return sys.stderr.isatty()


def plugin_sources(option: Path | None, config: Path | None) -> tuple[Path, list[str]]:
    """(plugins directory, plugin modules) by the rule of `plugins.plugins_directory`."""
    from .plugins import plugins_directory

    if config is None or not config.is_file():
        return plugins_directory(option, None), []
    app_config = load_config_or_fail(config)
    return plugins_directory(option, app_config.plugins_path), list(app_config.plugins)


def run_cli(group: click.Group) -> None:
    """The console entry point: every message leaves with credentials masked, and an unexpected
    error is one line (the traceback with `--log-level DEBUG`), never a dump."""
    import logging
    import traceback

    from .redact import redact

    try:
        code = group.main(prog_name="siem-gad", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.message = redact(exc.message)
        exc.show()
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a clear message, no secrets
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            click.echo(redact(traceback.format_exc()), err=True)
        click.echo(f"Error: {type(exc).__name__}: {redact(str(exc))} (--log-level DEBUG shows the traceback)", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
