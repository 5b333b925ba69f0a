"""`siem-gad kibana export|import`: the data view and dashboard for the alert index."""

from __future__ import annotations

from pathlib import Path

import click

from ..cli_support import config_option, load_config_or_fail
from ..hookspecs import hookimpl


@click.group()
def kibana() -> None:
    """Kibana saved objects (data view and dashboard) for the alert index."""


@kibana.command("export")
@config_option(required=False, help="Take the index from this config.")
@click.option("--sink", help="The elasticsearch sink whose index the data view shows.")
def kibana_export(config: Path | None, sink: str | None) -> None:
    """Print the saved objects as NDJSON (for Stack Management > Saved objects > Import)."""
    from ..elastic.kibana import saved_objects, to_ndjson
    from ..sinks.elasticsearch import configured_alert_index, configured_indices

    app_config = load_config_or_fail(config) if config else None
    try:
        configured_alert_index(app_config, sink)  # names the choices when `sink` is not one
    except KeyError as exc:
        raise click.ClickException(exc.args[0]) from None
    click.echo(to_ndjson(saved_objects(**configured_indices(app_config, sink))), nl=False)


@kibana.command("import")
@config_option()
def kibana_import(config: Path) -> None:
    """Post the data view and dashboard to Kibana (the config's `kibana:` section).

    \b
    Example:
      KIBANA_API_KEY=... siem-gad kibana import -c examples/elastic.yaml
    """
    from ..elastic.kibana import import_saved_objects, saved_objects, to_ndjson
    from ..sinks.elasticsearch import configured_alert_index, configured_indices

    app_config = load_config_or_fail(config)
    if app_config.kibana is None:
        raise click.ClickException(f"{config}: no `kibana:` section (url and credentials) to import into")
    try:
        configured_alert_index(app_config, app_config.kibana.sink)  # names the choices when the sink is wrong
        objects = saved_objects(**configured_indices(app_config, app_config.kibana.sink))
        answer = import_saved_objects(app_config.kibana, to_ndjson(objects))
    except (KeyError, RuntimeError) as exc:
        raise click.ClickException(exc.args[0] if isinstance(exc, KeyError) else str(exc)) from None
    click.echo(f"imported {answer.get('successCount', len(objects))} saved objects into {app_config.kibana.url}; "
               f"open the dashboard 'siem-gad: graph anomaly alerts'")


@hookimpl
def register_commands(cli):
    cli.add_command(kibana)
