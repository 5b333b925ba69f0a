"""`siem-gad incidents`, `siem-gad entities` and `siem-gad feedback`: the analyst's side."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click

from ..cli_support import TIME, config_option, open_app
from ..hookspecs import hookimpl


@click.command()
@config_option()
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Show this many, riskiest first.")
@click.option("--all", "show_all", is_flag=True,
              help="Include groups still below incidents.open_at (status watch) and incidents merged into others.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: the incident documents.")
@click.pass_context
def incidents(ctx: click.Context, config: Path, limit: int, show_all: bool, as_json: bool) -> None:
    """Incidents (alerts grouped by the entities they share), highest combined risk first."""
    app = open_app(ctx, config)
    try:
        with app.state.transaction() as db:
            found = app.triage.book(db).incidents(everything=show_all, limit=limit)
    finally:
        app.close()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for doc in found:
        info = doc["siem_gad"]["incident"]
        state = {"open": "", "watch": " (watch: below incidents.open_at)"}.get(
            info["status"], f" (merged into {info['merged_into']})")
        click.echo(f"{info['risk_score']:>6.2f} {info['severity']:<8} {info['id']}{state}\n       {info['summary']}")
    click.echo(f"{len(found)} incident(s)")


@click.command()
@config_option()
@click.option("--at", "at", type=TIME, default=None, help="Decay risk to this time (ISO or '-1d'); default: the newest alert.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def entities(ctx: click.Context, config: Path, at: datetime | None, limit: int, as_json: bool) -> None:
    """Entities by decayed risk: every alert about an entity adds to it, halving each
    `incidents.entity_half_life`."""
    from ..timeutil import isoformat
    from ..triage.entities import entity_risks

    app = open_app(ctx, config)
    try:
        with app.state.transaction() as db:
            ranked = entity_risks(db, app.config.incidents.entity_half_life, at)[:limit]
    finally:
        app.close()
    if as_json:
        click.echo(json.dumps([{**r.__dict__, "last_seen": isoformat(r.last_seen)} for r in ranked], indent=2))
        return
    for r in ranked:
        click.echo(f"{r.risk:>6.2f} {r.entity:<40} alerts={r.alerts} incidents={r.incidents} "
                   f"last={isoformat(r.last_seen)} rules={','.join(r.rules)}")
    click.echo(f"{len(ranked)} entit{'y' if len(ranked) == 1 else 'ies'}")


class FeedbackGroup(click.Group):
    """`siem-gad feedback ID --verdict ...` gives a verdict; `siem-gad feedback list` shows them."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["give", *args]
        return super().parse_args(ctx, args)


@click.group(cls=FeedbackGroup, invoke_without_command=False)
def feedback() -> None:
    """An analyst's verdict on an alert or incident: `siem-gad feedback ID --verdict
    false_positive|true_positive [--scope ...] [--until T] [--note TEXT]`; `siem-gad feedback list`."""


@feedback.command("give")
@click.argument("target")
@config_option()
@click.option("--verdict", type=click.Choice(["false_positive", "true_positive"]), required=True)
@click.option("--scope", type=click.Choice(["entity+rule", "entity", "rule"]), default="entity+rule", show_default=True,
              help="What a false positive suppresses: the rule about these entities, any rule about them, or the rule.")
@click.option("--until", type=TIME, default=None, help="Suppress until this time (ISO or '+7d'); default: for good.")
@click.option("--note", default="", help="Why (kept with the verdict and on the alert document).")
@click.option("--by", default=None, help="Who (default: the login name).")
@click.pass_context
def feedback_give(ctx: click.Context, target: str, config: Path, verdict: str, scope: str, until: datetime | None,
                  note: str, by: str | None) -> None:
    """Record a verdict on alert or incident TARGET."""
    from ..timeutil import isoformat
    from ..triage.feedback import verdict_for

    app = open_app(ctx, config)
    try:
        try:
            given = verdict_for(target, app.triage.targets(target), verdict, scope,
                                until, note, by)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        changed = app.triage.record(given)
    finally:
        app.close()
    effect = (f"suppresses {scope} ({', '.join(given.rules)} / {', '.join(given.entities)}) "
              f"{'until ' + isoformat(given.until) if given.until else 'for good'}"
              if verdict == "false_positive" else "labels these alerts anomalous at the next training")
    click.echo(f"{verdict} on {target} ({len(given.alerts)} alert(s)) recorded: {effect}; "
               f"{changed} alert document(s) marked in the SIEM")


@feedback.command("list")
@config_option()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def feedback_list(ctx: click.Context, config: Path, as_json: bool) -> None:
    """Show every verdict with who gave it and when."""
    from ..timeutil import isoformat

    app = open_app(ctx, config)
    try:
        verdicts = app.triage.verdicts()
    finally:
        app.close()
    if as_json:
        click.echo(json.dumps([{**v.__dict__, "until": v.until and isoformat(v.until), "at": v.at and isoformat(v.at)}
                               for v in verdicts], indent=2))
        return
    for v in verdicts:
        until = f" until {isoformat(v.until)}" if v.until else ""
        click.echo(f"{v.target} {v.verdict} {v.scope}{until} by {v.by} at {v.at and isoformat(v.at)} ({v.origin})"
                   f" {len(v.alerts)} alert(s){': ' + v.note if v.note else ''}")
    click.echo(f"{len(verdicts)} verdict(s)")


@hookimpl
def register_commands(cli):
    cli.add_command(incidents)
    cli.add_command(entities)
    cli.add_command(feedback)
