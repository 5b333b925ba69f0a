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


# The Mirai C&C network of capture 34-1 (185.244.25.235:6667, labeled C&C). Capture 42-1 holds 1,948
# flows between its infected host and 185.244.25.183 (port 4975) with the same Zeek patterns (S0 "S",
# S3 "ShAdDaf", RSTR "ShAdfDr"), all labeled Benign; 34-1 itself labels 65 flows to this network Benign.
IOT23_CC_NETWORK = "185.244.25."


def iot23(capture: str, rows: int | None = None, corrected_labels: bool = False) -> pd.DataFrame:
    """One IoT-23 capture; `label` is Benign/Malicious, `label.detailed` the attack class.

    `corrected_labels` labels every flow to or from the C&C network `IOT23_CC_NETWORK` malicious C&C,
    so that the same heartbeat is not an attack in one capture and benign in the next.
    """
    frame = pd.read_csv(IOT23 / f"{capture}-labeled.csv", nrows=rows, low_memory=False, na_values=["-"],
                        keep_default_na=False)
    frame = frame.rename(columns=ZEEK_TO_ECS)[list(ZEEK_TO_ECS.values())]
    frame["@timestamp"] = pd.to_datetime(frame["@timestamp"], unit="s", utc=True)
    frame["label"] = frame["label"].str.lower()
    frame["label.detailed"] = frame["label.detailed"].astype("string").fillna("-")
    if corrected_labels:
        to_cc = (frame["destination.ip"].astype(str).str.startswith(IOT23_CC_NETWORK)
                 | frame["source.ip"].astype(str).str.startswith(IOT23_CC_NETWORK)) & (frame["label"] == "benign")
        frame.loc[to_cc, ["label", "label.detailed"]] = ["malicious", "C&C"]
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
