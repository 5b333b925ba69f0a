"""`siem-gad ui`: the built-in web view of incidents, alerts, evidence graphs and entity timelines."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..cli_support import config_option, open_app
from ..hookspecs import hookimpl

TOKEN_VARIABLE = "SIEM_GAD_UI_TOKEN"


@click.command()
@config_option()
@click.option("--host", default="127.0.0.1", show_default=True,
              help=f"Address to listen on; any but a loopback address needs {TOKEN_VARIABLE}.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (0: any free one).")
@click.option("--sink", help="The jsonl or elasticsearch sink to read alerts from (default: the config's first).")
@click.option("--threads", type=click.IntRange(1, 64), default=4, show_default=True, help="Request threads.")
@click.pass_context
def ui(ctx: click.Context, config: Path, host: str, port: int, sink: str | None, threads: int) -> None:
    """Serve the web view: incidents and alerts (filter, page, open), an alert's explanation and
    evidence graph, an entity's score per window, the jobs' status, verdict buttons.

    \b
    Example:
      siem-gad ui -c config.example.yaml          # then open http://127.0.0.1:8765/
      SIEM_GAD_UI_TOKEN=$(openssl rand -hex 16) siem-gad ui -c config.yaml --host 0.0.0.0
    """
    import socket
    import time

    import waitress

    from ..ui.stores import AlertQuery, open_store
    from ..ui.web import create_app, is_loopback

    token = os.environ.get(TOKEN_VARIABLE) or None
    if not is_loopback(host) and token is None:
        raise click.ClickException(f"--host {host} lets other machines in: set {TOKEN_VARIABLE} to a secret they must "
                                   f"give (or keep the default 127.0.0.1)")
    app = open_app(ctx, config)
    try:
        try:
            sink_name, store = open_store(app, sink)
        except KeyError as exc:
            raise click.ClickException(exc.args[0]) from None
        began = time.monotonic()
        known = store.alerts(AlertQuery(per_page=5), {}).total  # read (and index) the alerts before the first visitor
        click.echo(f"siem-gad ui: {known} alerts in {sink_name} ({time.monotonic() - began:.1f} s to read)", err=True)
        web = create_app(app, store, sink_name=sink_name, token=token)
        server = waitress.create_server(web, host=host, port=port, threads=threads, ident="siem-gad",
                                        clear_untrusted_proxy_headers=True)
        bound = server.socket.getsockname()[1] if server.socket.family != socket.AF_UNIX else port
        click.echo(f"siem-gad ui: http://{host if ':' not in host else f'[{host}]'}:{bound}/ (alerts from {sink_name}; "
                   f"{'token required' if token else 'no token'}); Ctrl-C stops it", err=True)
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
            store.close()
    finally:
        app.close()


@hookimpl
def register_commands(cli):
    cli.add_command(ui)
