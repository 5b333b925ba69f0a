"""`siem-gad deadletter list|replay`: alerts a sink's server rejected."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..cli_support import config_option, open_app
from ..hookspecs import hookimpl


@click.group()
def deadletter() -> None:
    """Alerts a sink's server rejected (mapping conflicts ...): list them, replay them."""


@deadletter.command("list")
@config_option()
@click.option("--sink", help="Only this sink.")
@click.option("--all", "show_all", is_flag=True, help="Include entries already replayed.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output, documents included.")
@click.pass_context
def deadletter_list(ctx: click.Context, config: Path, sink: str | None, show_all: bool, as_json: bool) -> None:
    """Show dead-lettered alerts with the server's error."""
    app = open_app(ctx, config)
    try:
        entries = app.state.dead_letters(sink, pending=not show_all)
    finally:
        app.close()
    if as_json:
        click.echo(json.dumps([{**entry.__dict__, "created_at": str(entry.created_at),
                                "replayed_at": entry.replayed_at and str(entry.replayed_at)} for entry in entries],
                              indent=2, default=str))
        return
    for entry in entries:
        state = f"replayed {entry.replayed_at:%Y-%m-%d %H:%M}" if entry.replayed_at else "pending"
        click.echo(f"{entry.id:>5} {entry.sink} {entry.alert_id} {state} tries={entry.attempts} "
                   f"HTTP {entry.status}: {entry.error}")
    click.echo(f"{len(entries)} dead-lettered alert(s)")


@deadletter.command("replay")
@config_option()
@click.option("--sink", help="Only this sink.")
@click.pass_context
def deadletter_replay(ctx: click.Context, config: Path, sink: str | None) -> None:
    """Send the pending dead-lettered alerts to their sink again (after fixing the cause).

    Alerts that are stored now (or were already) leave the queue; the others stay, with the
    new error. Exit status 1 when some are still rejected.
    """
    from ..sinks.deadletter import replay_dead_letters

    app = open_app(ctx, config, writer="deadletter replay")
    try:
        results = replay_dead_letters(app, sink)
    finally:
        app.close()
    for r in results:
        if r.skipped:
            click.echo(f"{r.sink}: not in the config any more; entries kept", err=True)
        else:
            click.echo(f"{r.sink}: {r.replayed} replayed, {r.still_rejected} still rejected"
                       + (f" (first: {r.first_error})" if r.still_rejected else ""))
    if not results:
        click.echo("the dead-letter queue is empty")
    if any(r.still_rejected for r in results):
        sys.exit(1)


@hookimpl
def register_commands(cli):
    cli.add_command(deadletter)
