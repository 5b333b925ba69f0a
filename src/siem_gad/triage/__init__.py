"""Triage: what turns per-window alerts into work an analyst can rank, group and teach.

- `related`: the entities an alert touches besides its own (ECS `related.*`), and which of
  them may link alerts into one incident;
- `incidents`: alerts grouped into incidents in the state store, with a combined risk score;
- `entities`: a decayed risk score per entity over its alerts;
- `feedback`: analysts' verdicts, the scopes they suppress and the labels they give;
- `heartbeat`: one status document per pass, so the SIEM can watch siem-gad itself.

See docs/triage.md.
"""
