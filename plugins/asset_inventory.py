"""Example local plugin: add asset owner and criticality to alerts from a CSV inventory.

Copy this file into your plugins directory and edit it. It implements one hook,
`enrich_alert`, and reads `assets.csv` beside this file (or the file named by the
SIEM_GAD_ASSET_INVENTORY environment variable) with the columns

    entity,owner,criticality        e.g.   10.0.0.60,unix-team,critical

Alerts whose entity value matches a row get `siem_gad.asset.owner` and
`siem_gad.asset.criticality`; alerts on critical assets get 10 more risk points.
"""

from __future__ import annotations

import csv
import os
from functools import lru_cache
from pathlib import Path

from siem_gad import hookimpl


@lru_cache(maxsize=1)
def inventory() -> dict[str, dict[str, str]]:
    path = Path(os.environ.get("SIEM_GAD_ASSET_INVENTORY", Path(__file__).with_name("assets.csv")))
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["entity"].strip(): row for row in csv.DictReader(handle)}


@hookimpl
def enrich_alert(alert, job):
    entity = alert["siem_gad"]["entity"]["value"]
    asset = inventory().get(entity)
    if asset is None:
        return
    alert["siem_gad"]["asset"] = {"owner": asset["owner"], "criticality": asset["criticality"]}
    if asset["criticality"] == "critical":
        alert["event"]["risk_score"] = min(100.0, alert["event"]["risk_score"] + 10)
