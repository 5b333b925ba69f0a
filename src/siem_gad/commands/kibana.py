"""`siem-gad kibana export|import|validate`: saved objects (data views, visualisations, saved
searches, dashboard) for Kibana or OpenSearch Dashboards."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..cli_support import config_option, load_config_or_fail
from ..hookspecs import hookimpl

PRODUCT_CHOICE = click.Choice(["kibana", "opensearch-dashboards"])


@click.group()
def kibana() -> None:
    """Saved objects (data views and dashboard) for the alert, incident and status indices."""


def _objects(app_config, sink: str | None, product: str) -> list[dict]:
    from ..elastic.kibana import saved_objects
    from ..sinks.elasticsearch import configured_alert_index, configured_indices

    try:
        configured_alert_index(app_config, sink)  # names the choices when `sink` is not one
    except KeyError as exc:
        raise click.ClickException(exc.args[0]) from None
    return saved_objects(**configured_indices(app_config, sink), product=product)


@kibana.command("export")
@config_option(required=False, help="Take the index names from this config.")
@click.option("--sink", help="The elasticsearch sink whose indices the data views show.")
@click.option("--product", type=PRODUCT_CHOICE, default="kibana", show_default=True,
              help="Objects for Kibana, or for OpenSearch Dashboards.")
def kibana_export(config: Path | None, sink: str | None, product: str) -> None:
    """Print the saved objects as NDJSON (for Stack Management > Saved objects > Import)."""
    from ..elastic.kibana import to_ndjson

    app_config = load_config_or_fail(config) if config else None
    click.echo(to_ndjson(_objects(app_config, sink, product)), nl=False)


@kibana.command("validate")
@click.argument("bundle", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--product", type=PRODUCT_CHOICE, default="kibana", show_default=True)
def kibana_validate(bundle: Path, product: str) -> None:
    """Check an NDJSON bundle as the product's import would: schema per type, nested JSON,
    references, migration versions, and the fields against siem-gad's index templates."""
    from ..elastic.kibana import view_field_types
    from ..elastic.saved_objects import validate_bundle

    objects = []
    for number, line in enumerate(bundle.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            objects.append(json.loads(line.decode("utf-8")))
        except UnicodeDecodeError as exc:
            raise click.ClickException(f"{bundle}:{number}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except ValueError as exc:
            raise click.ClickException(f"{bundle}:{number}: not a JSON object: {exc}") from None
    problems = validate_bundle(objects, product, view_field_types())
    for problem in problems:
        click.echo(f"{bundle}: {problem}", err=True)
    if problems:
        raise click.ClickException(f"{len(problems)} problem(s); {product} would not import {bundle} as it is")
    click.echo(f"{bundle}: {len(objects)} saved objects, valid for {product}")


@kibana.command("import")
@config_option()
def kibana_import(config: Path) -> None:
    """Post the saved objects to the config's `kibana:` section (Kibana or OpenSearch Dashboards).

    \b
    Example:
      KIBANA_API_KEY=... siem-gad kibana import -c examples/elastic.yaml
    """
    from ..elastic.kibana import import_saved_objects, to_ndjson

    app_config = load_config_or_fail(config)
    if app_config.kibana is None:
        raise click.ClickException(f"{config}: no `kibana:` section (url and credentials) to import into")
    objects = _objects(app_config, app_config.kibana.sink, app_config.kibana.product)
    try:
        answer = import_saved_objects(app_config.kibana, to_ndjson(objects))
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"imported {answer.get('successCount', len(objects))} saved objects into {app_config.kibana.url}; "
               f"open the dashboard 'siem-gad: graph anomaly alerts'")


@hookimpl
def register_commands(cli):
    cli.add_command(kibana)
