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
from datetime import datetime
from pathlib import Path

import click

from . import __version__
from .cli_support import TIME, config_option, load_config_or_fail, open_app, plugin_sources, progress_enabled, run_cli
from .logs import setup_logging
from .plugins import config_argument
from .views import alert_lines, plugin_lines, status_lines
from .yamlfile import ConfigError

log = logging.getLogger("siem_gad")
# Commands that only read the config and state, in one thread: numpy loads only if they use it.
LIGHT_COMMANDS = ("check", "status", "plugins")


class PluginGroup(click.Group):
    """A group that adds the commands of plugins (`register_commands` hook) on first use."""

    _loaded = False

    def _load_plugin_commands(self, ctx: click.Context) -> None:
        if self._loaded:
            return
        self._loaded = True
        from .plugins import COMMAND_PLUGINS, load_host

        host = load_host(*plugin_sources(ctx.find_root().params.get("plugins_dir"), config_argument(sys.argv[1:])),
                         builtins=COMMAND_PLUGINS)
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
              help="Directory of local plugins; replaces plugins/ beside the config (without -c: plugins/ here).")  # eager: known to --help
@click.pass_context
def cli(ctx: click.Context, log_level: str | None, log_format: str | None, plugins_dir: Path | None) -> None:
    """Graph anomaly detection for your SIEM.

    Reads security events, builds a graph of entities per time window, scores it with anomaly
    detectors and writes explained ECS alerts. Start with `siem-gad check -c config.yaml`,
    then `siem-gad run -c config.yaml`.
    """
    ctx.obj = {"log_level": log_level, "log_format": log_format, "plugins_dir": plugins_dir}
    if ctx.invoked_subcommand in LIGHT_COMMANDS:
        from .lazy import light_start_up

        light_start_up()
    setup_logging((log_level or "INFO").upper(), log_format or "text")


@cli.command()
@config_option()
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

    app = open_app(ctx, config, writer="run")
    names = list(jobs) or list(app.config.jobs)
    unknown = [j for j in names if j not in app.config.jobs]
    if unknown:
        raise click.BadParameter(f"unknown job(s) {', '.join(unknown)}; jobs: {', '.join(app.config.jobs)}", param_hint="--job")
    log.info("threads: %s", app.threads.describe() if app.threads else "library defaults")
    stop = threading.Event()
    install_signal_handlers(stop)
    try:
        if once:
            outcomes = run_once(app, names, stop, progress=progress_enabled())
            if any(o.status == "error" for o in outcomes):
                sys.exit(1)
        else:
            run_forever(app, names, stop)
    finally:
        app.close()


@cli.command()
@config_option()
@click.option("--job", help="Only this job.")
@click.option("--detector", help="Only this detector of the job(s).")
@click.option("--from", "start", type=TIME, help="Start of the training range (ISO time or '-7d'); default: from the config.")
@click.option("--to", "end", type=TIME, help="End of the training range; default: --from plus training.windows windows.")
@click.pass_context
def train(ctx: click.Context, config: Path, job: str | None, detector: str | None, start: datetime | None,
          end: datetime | None) -> None:
    """Fit detectors on history and record the model versions.

    By default each detector is fitted on the `training.windows` windows before the job's
    checkpoint (or the job's first windows). `run` uses the newest model whose config matches.
    """
    from .timeutil import isoformat

    app = open_app(ctx, config, writer="train")
    try:
        for name in [job] if job else list(app.config.jobs):
            runner = app.job(name)
            requests = []
            for det in [detector] if detector else list(runner.config.detectors):
                if det not in runner.config.detectors:
                    raise click.BadParameter(f"job {name!r} has no detector {det!r}", param_hint="--detector")
                requests.append((det, *runner.requested_training_range(det, start, end)))
            for (det, begin, finish), record in zip(requests, runner.train_many(requests, progress=True)):
                labeled = "".join(f", {record.metrics[key]} rows {key.replace('_', ' ')}"
                                  for key in ("labeled_anomalous", "labeled_normal") if key in record.metrics)
                click.echo(f"{name}/{det}: model v{record.version} trained on {isoformat(begin)} .. {isoformat(finish)}, "
                           f"threshold {record.metrics['threshold']:.4f}{labeled}")
    except (ValueError, KeyError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        app.close()


@cli.command()
@config_option()
@click.pass_context
def check(ctx: click.Context, config: Path) -> None:
    """Validate the config, the rules and the plugins without running anything heavy."""
    from .inspection import inspect_config

    try:
        found = inspect_config(config, plugins_dir=ctx.obj["plugins_dir"])
    except ConfigError as exc:  # the config file itself is invalid
        raise click.ClickException(f"invalid configuration:\n{exc}") from None
    problems = [str(p) for p in found.problems] + [f"plugin problem: {failure}" for failure in found.host.failures]
    if problems:
        raise click.ClickException("\n".join(problems))
    click.echo(f"{config}: OK - {len(found.config.jobs)} job(s), {len(found.rules.rules) if found.rules else 0} "
               f"rule(s), {len(found.host.plugins)} plugin(s)")


@cli.command()
@config_option()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, config: Path, as_json: bool) -> None:
    """Per job: checkpoint, lag behind now, recent passes, model versions."""
    app = open_app(ctx, config)
    try:
        report = [app.job(name).status() for name in app.config.jobs]
    finally:
        app.close()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo("\n".join(status_lines(report)))


@cli.command()
@config_option(required=False, help="Also load the config's plugins.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def plugins(ctx: click.Context, config: Path | None, as_json: bool) -> None:
    """List the loaded plugins, where each came from, and what it provides."""
    from .plugins import load_host

    if config is not None and not config.is_file():
        raise click.BadParameter(f"{config}: file not found", param_hint="-c")
    host = load_host(*plugin_sources(ctx.obj["plugins_dir"], config))
    described = host.describe()
    click.echo(json.dumps(described, indent=2) if as_json else "\n".join(plugin_lines(described)))


@cli.command()
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="CSV file to write.")
@click.option("--hours", type=click.IntRange(min=1), default=72, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--hosts", type=click.IntRange(min=10), default=40, show_default=True, help="Number of workstations.")
@click.option("--start", type=TIME, default=None, help="First hour (ISO time); default 2026-01-05T00:00Z.")
@click.option("--no-attacks", is_flag=True, help="Benign activity only.")
def simulate(out: Path, hours: int, seed: int, hosts: int, start: datetime | None, no_attacks: bool) -> None:
    """Write the simulated enterprise (with labeled attacks) to a CSV file.

    The same data as the `simulate` source with the same settings; the `labels.attack` column
    holds the ground truth (benign, ssh_bruteforce, port_scan, lateral_movement, exfiltration,
    beaconing).
    """
    from .simulator import DEFAULT_START, Enterprise

    enterprise = Enterprise(seed=seed, hosts=hosts, start=start or DEFAULT_START, hours=hours,
                            attacks=not no_attacks)
    total = enterprise.write_csv(out)
    click.echo(f"wrote {total} events ({hours} h from {enterprise.start.isoformat()}) to {out}")


@cli.command()
@config_option()
@click.pass_context
def setup(ctx: click.Context, config: Path) -> None:
    """Create what the sinks and sources need: index templates, ILM policy, alert index.

    Safe to run again: templates are replaced, existing indices get new field mappings.

    \b
    Example:
      siem-gad setup -c examples/elastic.yaml
    """
    app = open_app(ctx, config)
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
@config_option()
@click.option("--label-field", required=True, help="Event field holding the ground truth, e.g. labels.attack.")
@click.option("--positive", "positives", multiple=True,
              help="A label value that means attack (repeatable). Default: anything but benign/normal/-/0/false/empty.")
@click.option("--from", "start", type=TIME, help="Start of the range (ISO time or '-30d'); default: the source's first event.")
@click.option("--to", "end", type=TIME, help="End of the range; default: the source's horizon.")
@click.option("--job", "jobs", multiple=True, help="Only this job (repeatable).")
@click.option("--use-models", is_flag=True, help="Score with the jobs' current trained models instead of training.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("evaluation"), show_default=True,
              help="Directory for report.md, metrics.json and the plots.")
@click.pass_context
def evaluate(ctx: click.Context, config: Path, label_field: str, positives: tuple[str, ...], start: datetime | None,
             end: datetime | None, jobs: tuple[str, ...], use_models: bool, out: Path) -> None:
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
    from .triage.feedback import read_verdicts

    production = load_config_or_fail(config).state_path
    verdicts = read_verdicts(production / "state.sqlite")  # to report precision with analysts' verdicts
    app = open_app(ctx, config, state_dir=production if use_models else (out / "state"))
    try:
        unknown = [j for j in jobs if j not in app.config.jobs]
        if unknown:
            raise click.BadParameter(f"unknown job(s) {', '.join(unknown)}", param_hint="--job")
        result = run_evaluation(app, label_field=label_field, positives=positives,
                                start=start, end=end,
                                jobs=list(jobs) or None, use_models=use_models, progress=progress_enabled(),
                                verdicts=verdicts)
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
@config_option()
@click.option("--json", "as_json", is_flag=True, help="Print the whole alert document.")
@click.pass_context
def explain(ctx: click.Context, alert_id: str, config: Path, as_json: bool) -> None:
    """Show why a stored alert fired: score, entity, top features and evidence.

    Looks the alert up in the config's sinks (a JSON Lines file, the SIEM's alert index).

    \b
    Example:
      siem-gad explain 3f9c0d5e... -c config.example.yaml
    """
    app = open_app(ctx, config)
    try:
        alert = next((found for name in app.config.sinks if (found := app.sink(name).find(alert_id))), None)
    finally:
        app.close()
    if alert is None:
        raise click.ClickException(f"no alert {alert_id} in the sinks of {config} ({', '.join(app.config.sinks)})")
    click.echo(json.dumps(alert, indent=2, sort_keys=True) if as_json else "\n".join(alert_lines(alert_id, alert)))


def main() -> None:
    run_cli(cli)


if __name__ == "__main__":
    main()
