"""The `siem-gad` command line.

Start-up stays light: nothing here imports pandas, torch or scikit-learn at module level, so
`siem-gad --help` and `siem-gad check` answer quickly; the heavy libraries load when a
detector trains or scores.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path

import click

from . import __version__
from .logs import setup_logging
from .plugins import config_argument
from .yamlfile import ConfigError

log = logging.getLogger("siem_gad")
CONFIG_HELP = "Configuration file (YAML)."


def _plugin_sources(option: Path | None, config: Path | None) -> tuple[Path, list[str]]:
    """(plugins directory, plugin modules) by the rule of `plugins.plugins_directory`."""
    from .plugins import plugins_directory

    if config is None or not config.is_file():
        return plugins_directory(option, None), []
    from .config import load_config

    try:
        app_config = load_config(config)
    except ConfigError as exc:
        raise click.ClickException(f"invalid configuration:\n{exc}") from None
    return plugins_directory(option, app_config.plugins_path), list(app_config.plugins)


class PluginGroup(click.Group):
    """A group that adds the commands of plugins (`register_commands` hook) on first use."""

    _loaded = False

    def _load_plugin_commands(self, ctx: click.Context) -> None:
        if self._loaded:
            return
        self._loaded = True
        from .plugins import load_host

        host = load_host(*_plugin_sources(ctx.find_root().params.get("plugins_dir"), config_argument(sys.argv[1:])))
        host.call_each("register_commands", cli=self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands(ctx)
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None:
            self._load_plugin_commands(ctx)
            command = super().get_command(ctx, name)
        return command


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="siem-gad")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              default=None, help="Log level (default: the config's logging.level, else INFO).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None, help="Readable text or JSON lines.")
@click.option("--plugins-dir", type=click.Path(path_type=Path, file_okay=False), default=None, is_eager=True,
              help="Directory of local plugins (default: plugins/ beside the config).")  # eager: known to --help
@click.pass_context
def cli(ctx: click.Context, log_level: str | None, log_format: str | None, plugins_dir: Path | None) -> None:
    """Graph anomaly detection for your SIEM.

    Reads security events, builds a graph of entities per time window, scores it with anomaly
    detectors and writes explained ECS alerts. Start with `siem-gad check -c config.yaml`,
    then `siem-gad run -c config.yaml`.
    """
    ctx.obj = {"log_level": log_level, "log_format": log_format, "plugins_dir": plugins_dir}
    setup_logging((log_level or "INFO").upper(), log_format or "text")


def _open(ctx: click.Context, config: Path, state_dir: Path | None = None):
    """Load config, plugins and rules; exit 2 with precise messages when they are invalid."""
    from .config import load_config
    from .pipeline import App

    options = ctx.obj
    try:
        app_config = load_config(config)
    except ConfigError as exc:
        raise click.ClickException(f"invalid configuration:\n{exc}") from None
    setup_logging((options["log_level"] or app_config.logging.level).upper(), options["log_format"] or app_config.logging.format)
    try:
        return App.open(config, plugins_dir=options["plugins_dir"], state_dir=state_dir)
    except ConfigError as exc:
        raise click.ClickException(f"invalid configuration:\n{exc}") from None


def _progress_enabled() -> bool:
    return sys.stderr.isatty()


@cli.command()
@click.option("-c", "--config", type=click.Path(path_type=Path, dir_okay=False), required=True, help=CONFIG_HELP)
@click.option("--once", is_flag=True, help="Process everything that is due (catching up after downtime), then exit.")
@click.option("--job", "jobs", multiple=True, help="Run only this job (repeatable). Default: every job.")
@click.pass_context
def run(ctx: click.Context, config: Path, once: bool, jobs: tuple[str, ...]) -> None:
    """Run the jobs on their schedules (or once with --once).

    Detectors without a model are trained first on the job's history. Every pass resumes from
    the job's checkpoint, so after downtime it catches up on every missed window. SIGINT or
    SIGTERM finishes the current batch and exits cleanly.
    """
    from .scheduler import install_signal_handlers, run_forever, run_once

    app = _open(ctx, config)
    names = list(jobs) or list(app.config.jobs)
    unknown = [j for j in names if j not in app.config.jobs]
    if unknown:
        raise click.BadParameter(f"unknown job(s) {', '.join(unknown)}; jobs: {', '.join(app.config.jobs)}", param_hint="--job")
    stop = threading.Event()
    install_signal_handlers(stop)
    try:
        if once:
            outcomes = run_once(app, names, stop, progress=_progress_enabled())
            if any(o.status == "error" for o in outcomes):
                sys.exit(1)
        else:
            run_forever(app, names, stop)
    finally:
        app.close()


@cli.command()
@click.option("-c", "--config", type=click.Path(path_type=Path, dir_okay=False), required=True, help=CONFIG_HELP)
@click.option("--job", help="Only this job.")
@click.option("--detector", help="Only this detector of the job(s).")
@click.option("--from", "start", help="Start of the training range (ISO time or '-7d'); default: from the config.")
@click.option("--to", "end", help="End of the training range; default: --from plus training.windows windows.")
@click.pass_context
def train(ctx: click.Context, config: Path, job: str | None, detector: str | None, start: str | None, end: str | None) -> None:
    """Fit detectors on history and record the model versions.

    By default each detector is fitted on the `training.windows` windows before the job's
    checkpoint (or the job's first windows). `run` uses the newest model whose config matches.
    """
    from .timeutil import align_down, isoformat, parse_time

    app = _open(ctx, config)
    try:
        names = [job] if job else list(app.config.jobs)
        for name in names:
            runner = app.job(name)
            detectors = [detector] if detector else list(runner.config.detectors)
            plan = runner.plan()
            for det in detectors:
                if det not in runner.config.detectors:
                    raise click.BadParameter(f"job {name!r} has no detector {det!r}", param_hint="--detector")
                if start:
                    begin = align_down(parse_time(start), runner.window)
                    finish = align_down(parse_time(end), runner.window) if end else begin + runner.config.detectors[det].training.windows * runner.window
                elif plan.start is None:
                    raise click.ClickException(f"{name}: the source holds no events to train on")
                else:
                    begin, finish = runner.training_range(det, plan)
                record = runner.train(det, begin, finish, progress=True)
                labeled = "".join(f", {record.metrics[key]} rows {key.replace('_', ' ')}"
                                  for key in ("labeled_anomalous", "labeled_normal") if key in record.metrics)
                click.echo(f"{name}/{det}: model v{record.version} trained on {isoformat(begin)} .. {isoformat(finish)}, "
                           f"threshold {record.metrics['threshold']:.4f}{labeled}")
    except (ValueError, KeyError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        app.close()


@cli.command()
@click.option("-c", "--config", type=click.Path(path_type=Path, dir_okay=False), required=True, help=CONFIG_HELP)
@click.pass_context
def check(ctx: click.Context, config: Path) -> None:
    """Validate the config, the rules and the plugins without running anything heavy."""
    from .config import load_config, validate_components
    from .plugins import load_host
    from .rules import load_rules

    try:
        app_config = load_config(config)
    except ConfigError as exc:
        raise click.ClickException(f"invalid configuration:\n{exc}") from None
    host = load_host(*_plugin_sources(ctx.obj["plugins_dir"], config))
    problems = [str(p) for p in validate_components(app_config, host)]
    rules = None
    try:
        rules = load_rules(app_config)
    except ConfigError as exc:
        problems.extend(str(p) for p in exc.problems)
    problems.extend(f"plugin problem: {failure}" for failure in host.failures)
    if problems:
        raise click.ClickException("\n".join(problems))
    click.echo(f"{config}: OK - {len(app_config.jobs)} job(s), {len(rules.rules) if rules else 0} rule(s), "
               f"{len(host.plugins)} plugin(s)")


@cli.command()
@click.option("-c", "--config", type=click.Path(path_type=Path, dir_okay=False), required=True, help=CONFIG_HELP)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, config: Path, as_json: bool) -> None:
    """Per job: checkpoint, lag behind now, recent passes, model versions."""
    app = _open(ctx, config)
    try:
        report = [app.job(name).status() for name in app.config.jobs]
    finally:
        app.close()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for job in report:
        lag = f"{job['lag_seconds'] / 3600:.1f} h behind now" if job["lag_seconds"] is not None else "not started"
        click.echo(f"job {job['job']} (source {job['source']}): checkpoint {job['checkpoint'] or '-'} ({lag})")
        if job["source_counters"]:
            click.echo("  source: " + " ".join(f"{k}={v}" for k, v in job["source_counters"].items()))
        if job["waiting"]:
            click.echo(f"  WAITING: {job['waiting']}")
        if job["dead_letters"]:
            click.echo(f"  DEAD-LETTERED: {job['dead_letters']} alert(s) rejected by a sink; see `siem-gad deadletter list`")
        for model in job["models"]:
            version = f"v{model['version']}" if model["version"] else "-"
            trained = f", trained on {model['trained_on']}" if model["trained_on"] else ""
            click.echo(f"  detector {model['detector']} ({model['type']}): {version} {model['state']}{trained}")
        for p in job["passes"]:
            window = f"{p['window_start']} .. {p['window_end']}" if p["window_start"] else "-"
            click.echo(f"  pass {p['started']} {p['status']:<8} {window} events={p['events']} alerts={p['alerts']} "
                       f"quarantined={p['quarantined']} {p['seconds']:.2f}s {p['message']}")


@cli.command()
@click.option("-c", "--config", type=click.Path(path_type=Path, dir_okay=False), help="Also load the config's plugins.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def plugins(ctx: click.Context, config: Path | None, as_json: bool) -> None:
    """List the loaded plugins, where each came from, and what it provides."""
    from .plugins import load_host

    if config is not None and not config.is_file():
        raise click.BadParameter(f"{config}: file not found", param_hint="-c")
    host = load_host(*_plugin_sources(ctx.obj["plugins_dir"], config))
    described = host.describe()
    if as_json:
        click.echo(json.dumps(described, indent=2))
        return
    for plugin in described:
        provides = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in plugin["components"].items())
        hooks = ", ".join(h for h in plugin["hooks"] if not h.startswith("register_") or h == "register_commands")
        line = f"{plugin['name']:<40} {plugin['status']:<8} {plugin['origin']:<12} {provides}"
        click.echo(line + (f" hooks: {hooks}" if hooks else ""))
        if plugin["error"]:
            click.echo(f"    error: {plugin['error']}  ({plugin['location']})")


@cli.command()
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="CSV file to write.")
@click.option("--hours", type=click.IntRange(min=1), default=72, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--hosts", type=click.IntRange(min=10), default=40, show_default=True, help="Number of workstations.")
@click.option("--start", default=None, help="First hour (ISO time); default 2026-01-05T00:00Z.")
@click.option("--no-attacks", is_flag=True, help="Benign activity only.")
def simulate(out: Path, hours: int, seed: int, hosts: int, start: str | None, no_attacks: bool) -> None:
    """Write the simulated enterprise (with labeled attacks) to a CSV file.

    The same data as the `simulate` source with the same settings; the `labels.attack` column
    holds the ground truth (benign, ssh_bruteforce, port_scan, lateral_movement, exfiltration,
    beaconing).
    """
    from .simulator import DEFAULT_START, Enterprise
    from .timeutil import parse_time

    enterprise = Enterprise(seed=seed, hosts=hosts, start=parse_time(start) if start else DEFAULT_START, hours=hours,
                            attacks=not no_attacks)
    out.parent.mkdir(parents=True, exist_ok=True)
    total = 0
    with out.open("w", encoding="utf-8", newline="") as handle:
        for h in range(hours):
            frame = enterprise.hour(h)
            frame["@timestamp"] = frame["@timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            frame.to_csv(handle, index=False, header=(h == 0))
            total += len(frame)
    click.echo(f"wrote {total} events ({hours} h from {enterprise.start.isoformat()}) to {out}")


@cli.command()
@click.option("-c", "--config", type=click.Path(path_type=Path, dir_okay=False), required=True, help=CONFIG_HELP)
@click.pass_context
def setup(ctx: click.Context, config: Path) -> None:
    """Create what the sinks and sources need: index templates, ILM policy, alert index.

    Safe to run again: templates are replaced, existing indices get new field mappings.

    \b
    Example:
      siem-gad setup -c examples/elastic.yaml
    """
    app = _open(ctx, config)
    try:
        components = [("sink", name, app.sink) for name in app.config.sinks] + \
                     [("source", name, app.source) for name in app.config.sources]
        for kind, name, get in components:
            try:
                done = get(name).setup()
            except Exception as exc:  # noqa: BLE001 - report which component failed, then stop
                raise click.ClickException(f"{kind} {name}: setup failed: {exc}") from None
            for line in done:
                click.echo(f"{kind} {name}: {line}")
    finally:
        app.close()


@cli.command()
@click.option("-c", "--config", type=click.Path(path_type=Path, dir_okay=False), required=True, help=CONFIG_HELP)
@click.option("--label-field", required=True, help="Event field holding the ground truth, e.g. labels.attack.")
@click.option("--positive", "positives", multiple=True,
              help="A label value that means attack (repeatable). Default: anything but benign/normal/-/0/false/empty.")
@click.option("--from", "start", help="Start of the range (ISO time or '-30d'); default: the source's first event.")
@click.option("--to", "end", help="End of the range; default: the source's horizon.")
@click.option("--job", "jobs", multiple=True, help="Only this job (repeatable).")
@click.option("--use-models", is_flag=True, help="Score with the jobs' current trained models instead of training.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("evaluation"), show_default=True,
              help="Directory for report.md, metrics.json and the plots.")
@click.pass_context
def evaluate(ctx: click.Context, config: Path, label_field: str, positives: tuple[str, ...], start: str | None,
             end: str | None, jobs: tuple[str, ...], use_models: bool, out: Path) -> None:
    """Measure the detectors and rules of a config on labeled history.

    Replays each job's source over the range, fits every detector on the first
    `training.windows` windows, scores the rest, joins the scores to the labels at the
    detector's level (an entity-window is positive if any of its events is) and writes
    report.md, metrics.json and ROC, precision-recall, timeline and alerts-per-day plots.
    Production state is not touched: the replay keeps its own state under OUT/state.

    \b
    Example:
      siem-gad evaluate -c config.example.yaml --label-field labels.attack --out evaluation/
    """
    from .evaluate.report import write_report
    from .evaluate.runner import EvaluationError
    from .evaluate.runner import evaluate as run_evaluation
    from .timeutil import parse_time

    production_state = None
    if use_models:
        from .config import load_config

        try:
            production_state = load_config(config).state_path
        except ConfigError as exc:
            raise click.ClickException(f"invalid configuration:\n{exc}") from None
    app = _open(ctx, config, state_dir=production_state or (out / "state"))
    try:
        unknown = [j for j in jobs if j not in app.config.jobs]
        if unknown:
            raise click.BadParameter(f"unknown job(s) {', '.join(unknown)}", param_hint="--job")
        result = run_evaluation(app, label_field=label_field, positives=positives,
                                start=parse_time(start) if start else None, end=parse_time(end) if end else None,
                                jobs=list(jobs) or None, use_models=use_models, progress=_progress_enabled())
        files = write_report(result, out)
    except (EvaluationError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        app.close()
    for d in result.detectors:
        auc = d.metrics["roc_auc"]
        click.echo(f"{d.job}/{d.detector}: ROC-AUC {'-' if auc is None else f'{auc:.3f}'}, "
                   f"AP {d.metrics['average_precision'] or 0:.3f}, {d.metrics['positives']} positive of "
                   f"{d.metrics['items']} {d.level} items")
    click.echo(f"report: {files['report']}")


@cli.command()
@click.argument("alert_id")
@click.option("-c", "--config", type=click.Path(path_type=Path, dir_okay=False), required=True, help=CONFIG_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the whole alert document.")
@click.pass_context
def explain(ctx: click.Context, alert_id: str, config: Path, as_json: bool) -> None:
    """Show why a stored alert fired: score, entity, top features and evidence.

    Looks the alert up in the config's sinks (a JSON Lines file, the SIEM's alert index).

    \b
    Example:
      siem-gad explain 3f9c0d5e... -c config.example.yaml
    """
    app = _open(ctx, config)
    try:
        alert = next((found for name in app.config.sinks if (found := app.sink(name).find(alert_id))), None)
    finally:
        app.close()
    if alert is None:
        raise click.ClickException(f"no alert {alert_id} in the sinks of {config} ({', '.join(app.config.sinks)})")
    if as_json:
        click.echo(json.dumps(alert, indent=2, sort_keys=True))
        return
    from .alerts import get_dotted

    g = lambda key, default="": get_dotted(alert, key, default)  # noqa: E731
    click.echo(f"alert {alert_id}: {g('rule.name')} ({g('siem_gad.severity')}, risk {g('event.risk_score')})")
    click.echo(g("message"))
    click.echo(f"window   {g('siem_gad.window.start')} .. {g('siem_gad.window.end')}")
    click.echo(f"detector {g('siem_gad.job')}/{g('siem_gad.detector')} ({g('siem_gad.detector_type')}, model "
               f"v{g('siem_gad.model_version')}): score {g('siem_gad.score')} >= threshold {g('siem_gad.threshold')}")
    click.echo(f"entity   {g('siem_gad.entity.field')} = {g('siem_gad.entity.value')}")
    click.echo(f"why      {g('siem_gad.summary')}")
    method = g("siem_gad.details.explained_by") or "contribution"
    click.echo(f"top features ({method}):")
    for item in g("siem_gad.explanation", []):
        click.echo(f"  {item['name']:<24} value {item['value']:<14} weight {item['weight']:+.4f}")
    ids = g("siem_gad.evidence.event_ids", [])
    click.echo(f"evidence {g('siem_gad.evidence.count', 0)} event(s): {', '.join(ids[:10])}"
               + (" ..." if len(ids) > 10 else ""))


@cli.group()
def deadletter() -> None:
    """Alerts a sink's server rejected (mapping conflicts ...): list them, replay them."""


@deadletter.command("list")
@click.option("-c", "--config", type=click.Path(path_type=Path, dir_okay=False), required=True, help=CONFIG_HELP)
@click.option("--sink", help="Only this sink.")
@click.option("--all", "show_all", is_flag=True, help="Include entries already replayed.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output, documents included.")
@click.pass_context
def deadletter_list(ctx: click.Context, config: Path, sink: str | None, show_all: bool, as_json: bool) -> None:
    """Show dead-lettered alerts with the server's error."""
    app = _open(ctx, config)
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
@click.option("-c", "--config", type=click.Path(path_type=Path, dir_okay=False), required=True, help=CONFIG_HELP)
@click.option("--sink", help="Only this sink.")
@click.pass_context
def deadletter_replay(ctx: click.Context, config: Path, sink: str | None) -> None:
    """Send the pending dead-lettered alerts to their sink again (after fixing the cause).

    Alerts that are stored now (or were already) leave the queue; the others stay, with the
    new error. Exit status 1 when some are still rejected.
    """
    app = _open(ctx, config)
    still_rejected = 0
    try:
        entries = app.state.dead_letters(sink)
        for sink_name in sorted({e.sink for e in entries}):
            if sink_name not in app.config.sinks:
                click.echo(f"{sink_name}: not in the config any more; entries kept", err=True)
                continue
            batch = [e for e in entries if e.sink == sink_name]
            errors = app.sink(sink_name).replay([e.document for e in batch])
            app.state.mark_replayed([e.id for e in batch if e.alert_id not in errors])
            failed = [e for e in batch if e.alert_id in errors]
            if failed:
                app.state.add_dead_letters(sink_name, [(e.document, None, errors[e.alert_id]) for e in failed])
            still_rejected += len(failed)
            click.echo(f"{sink_name}: {len(batch) - len(failed)} replayed, {len(failed)} still rejected"
                       + (f" (first: {errors[failed[0].alert_id]})" if failed else ""))
        if not entries:
            click.echo("the dead-letter queue is empty")
    finally:
        app.close()
    if still_rejected:
        sys.exit(1)


@cli.group()
def kibana() -> None:
    """Kibana saved objects (data view and dashboard) for the alert index."""


def _alert_index(app_config, sink: str | None) -> str:
    specs = {name: spec for name, spec in app_config.sinks.items() if spec.type == "elasticsearch"}
    if sink:
        if sink not in specs:
            raise click.ClickException(f"no elasticsearch sink named {sink!r} (have: {', '.join(specs) or 'none'})")
        return specs[sink].params.get("index", "siem-gad-alerts")
    return next(iter(specs.values())).params.get("index", "siem-gad-alerts") if specs else "siem-gad-alerts"


@kibana.command("export")
@click.option("-c", "--config", type=click.Path(path_type=Path, dir_okay=False), help="Take the index from this config.")
@click.option("--sink", help="The elasticsearch sink whose index the data view shows.")
def kibana_export(config: Path | None, sink: str | None) -> None:
    """Print the saved objects as NDJSON (for Stack Management > Saved objects > Import)."""
    from .elastic.kibana import saved_objects, to_ndjson

    index = "siem-gad-alerts"
    if config:
        from .config import load_config

        try:
            index = _alert_index(load_config(config), sink)
        except ConfigError as exc:
            raise click.ClickException(f"invalid configuration:\n{exc}") from None
    click.echo(to_ndjson(saved_objects(index)), nl=False)


@kibana.command("import")
@click.option("-c", "--config", type=click.Path(path_type=Path, dir_okay=False), required=True, help=CONFIG_HELP)
def kibana_import(config: Path) -> None:
    """Post the data view and dashboard to Kibana (the config's `kibana:` section).

    \b
    Example:
      KIBANA_API_KEY=... siem-gad kibana import -c examples/elastic.yaml
    """
    from .config import load_config
    from .elastic.kibana import import_saved_objects, saved_objects, to_ndjson

    try:
        app_config = load_config(config)
    except ConfigError as exc:
        raise click.ClickException(f"invalid configuration:\n{exc}") from None
    if app_config.kibana is None:
        raise click.ClickException(f"{config}: no `kibana:` section (url and credentials) to import into")
    objects = saved_objects(_alert_index(app_config, app_config.kibana.sink))
    try:
        answer = import_saved_objects(app_config.kibana, to_ndjson(objects))
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"imported {answer.get('successCount', len(objects))} saved objects into {app_config.kibana.url}; "
               f"open the dashboard 'siem-gad: graph anomaly alerts'")


def main() -> None:
    """The console entry point: every message leaves with credentials masked, and an unexpected
    error is one line (the traceback with `--log-level DEBUG`), never a dump."""
    import logging
    import traceback

    from .redact import redact

    try:
        code = cli.main(prog_name="siem-gad", standalone_mode=False)
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


if __name__ == "__main__":
    main()
