"""Real labeled flow data (../shared/data) as ECS event frames, for the graph detector benchmarks.

IoT-23 (Garcia, Parmisano, Erquiaga, Stratosphere Lab, 2020, CC BY 4.0): Zeek conn logs.
LUFlow (Mills et al., Lancaster University): daily flow CSVs, addresses anonymised to AS numbers.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from siem_gad.events import finalize_events

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IOT23 = DATA / "iot23"
LUFLOW = DATA / "luflow"
IOT23_CAPTURES = ["CTU-Malware-Capture-34-1", "CTU-Malware-Capture-42-1", "CTU-Malware-Capture-44-1",
                  "CTU-Honeypot-Capture-4-1", "CTU-Honeypot-Capture-5-1", "CTU-Honeypot-Capture-7-1"]
LUFLOW_DAYS = ["2020.07.08", "2020.07.09", "2020.07.11", "2020.09.09", "2020.12.17", "2020.12.18", "2020.12.22",
               "2020.12.23"]

ZEEK_TO_ECS = {"ts": "@timestamp", "uid": "event.id", "id.orig_h": "source.ip", "id.orig_p": "source.port",
               "id.resp_h": "destination.ip", "id.resp_p": "destination.port", "proto": "network.transport",
               "service": "network.protocol", "duration": "event.duration", "orig_bytes": "source.bytes",
               "resp_bytes": "destination.bytes", "conn_state": "zeek.connection.state",
               "history": "zeek.connection.history", "orig_pkts": "source.packets", "resp_pkts": "destination.packets",
               "label": "label", "detailed-label": "label.detailed"}


def iot23(capture: str, rows: int | None = None) -> pd.DataFrame:
    """One IoT-23 capture; `label` is Benign/Malicious, `label.detailed` the attack class."""
    frame = pd.read_csv(IOT23 / f"{capture}-labeled.csv", nrows=rows, low_memory=False, na_values=["-"],
                        keep_default_na=False)
    frame = frame.rename(columns=ZEEK_TO_ECS)[list(ZEEK_TO_ECS.values())]
    frame["@timestamp"] = pd.to_datetime(frame["@timestamp"], unit="s", utc=True)
    frame["label"] = frame["label"].str.lower()
    frame["label.detailed"] = frame["label.detailed"].astype("string").fillna("-")
    frame["capture"] = capture
    return finalize_events(frame, capture)


LUFLOW_TO_ECS = {"src_ip": "source.ip", "dest_ip": "destination.ip", "src_port": "source.port",
                 "dest_port": "destination.port", "proto": "network.iana_number", "bytes_out": "source.bytes",
                 "bytes_in": "destination.bytes", "num_pkts_out": "source.packets", "num_pkts_in": "destination.packets",
                 "duration": "event.duration", "avg_ipt": "flow.avg_ipt", "entropy": "flow.entropy",
                 "total_entropy": "flow.total_entropy", "label": "label"}


def luflow(day: str, rows: int | None = None) -> pd.DataFrame:
    """One LUFlow day; `label` is benign / malicious / outlier. Addresses are AS numbers (as text)."""
    frame = pd.read_csv(LUFLOW / f"{day}.zip", nrows=rows)
    stamps = frame["time_start"].astype(str).str[:10].astype("int64")
    frame = frame.rename(columns=LUFLOW_TO_ECS)[list(LUFLOW_TO_ECS.values())]
    frame["@timestamp"] = pd.to_datetime(stamps, unit="s", utc=True)
    frame["source.ip"] = frame["source.ip"].astype(str)
    frame["destination.ip"] = frame["destination.ip"].astype(str)
    frame["network.transport"] = frame["network.iana_number"].map({6: "tcp", 17: "udp", 1: "icmp"}).fillna("other")
    frame["event.id"] = [f"{day}-{i}" for i in range(len(frame))]
    return finalize_events(frame, day)
