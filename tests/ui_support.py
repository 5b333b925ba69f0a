"""Shared by the web view tests: a deployment that has run once, a hostile alert, a live server.

`deploy` runs the real pipeline (`siem-gad run --once`) on the small simulated enterprise of
conftest, writing to a JSON Lines sink and, given a server URL, to the OpenSearch-compatible
test server as well, so the same pages can be compared over both stores.
"""

from __future__ import annotations

import json
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import yaml

from conftest import make_config, siem_gad

HOSTILE_USER = "<img src=x onerror=alert(1)>"
HOSTILE_MESSAGE = "login by \"<script>alert('x')</script>\" from 'O\"Brien' at /tmp/<b>x</b>"
HOSTILE_ID = "0badc0de" * 4


def deploy(directory: Path, es_url: str | None = None) -> Path:
    config_path = make_config(directory)
    config = yaml.safe_load(config_path.read_text())
    if es_url:
        config["sinks"]["siem"] = {"type": "elasticsearch", "hosts": [es_url], "flavor": "opensearch",
                                   "index": "siem-gad-alerts", "refresh": True}
        config["jobs"]["network"]["sinks"] = ["alerts", "siem"]
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    siem_gad("run", "-c", str(config_path), "--once", cwd=directory)
    return config_path


def hostile_alert(template: dict) -> dict:
    """A copy of a real alert about a user whose name, and a message, are markup."""
    doc = json.loads(json.dumps(template))
    doc["siem_gad"]["alert_id"] = doc["event"]["id"] = HOSTILE_ID
    doc["siem_gad"]["entity"] = {"field": "user.name", "value": HOSTILE_USER}
    doc["message"] = HOSTILE_MESSAGE
    doc["siem_gad"]["summary"] = HOSTILE_MESSAGE
    doc["siem_gad"]["explanation"] = [{"name": "user.name", "value": HOSTILE_USER, "weight": 1.0}]
    doc["siem_gad"]["graph"] = {"nodes": [
        {"field": "user.name", "value": HOSTILE_USER, "kind": "user", "role": "alerted", "score": 1.0, "weight": 1.0,
         "degree": 1},
        {"field": "host.name", "value": "\"><svg onload=alert(2)>", "kind": "host", "role": "peer", "score": 2.0,
         "weight": None, "degree": 1}], "edges": [{"a": 0, "b": 1, "events": 3, "unusual": True, "score": None}],
        "left_out": 0}
    doc["siem_gad"]["evidence"] = {"event_ids": ["<i>id</i>"], "count": 1}
    doc.pop("destination", None)
    doc.pop("source", None)
    doc["user"] = {"name": HOSTILE_USER}
    return doc


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serving(config: Path, sink: str | None = None, token: str | None = None) -> Iterator[str]:
    """The web view of `config` served by waitress on a free port; yields its base URL."""
    import waitress

    from siem_gad.pipeline import App
    from siem_gad.ui.stores import open_store
    from siem_gad.ui.web import create_app

    app = App.open(config)
    sink_name, store = open_store(app, sink)
    server = waitress.create_server(create_app(app, store, sink_name=sink_name, token=token), host="127.0.0.1",
                                    port=free_port(), threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(timeout=5)
        app.close()
