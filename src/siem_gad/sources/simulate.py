"""The `simulate` source: the synthetic enterprise of `siem_gad.simulator` as a replayable store."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from ..components import Params
from ..config import TimeText
from ..simulator import DEFAULT_START, Enterprise
from ..timeutil import parse_time, utcnow
from . import Cursor, ReadResult, Source


class SimulateSource(Source):
    """Deterministic synthetic events with labeled attacks (`labels.attack`)."""

    splittable = True  # every hour is generated from the seed alone

    class Params(Params):
        seed: int = 7
        hosts: int = Field(40, ge=10, le=100_000, description="number of workstations")
        start: TimeText = Field(DEFAULT_START.isoformat(), description="ISO time or relative ('-3d') of the first event")
        hours: int = Field(72, ge=1, description="length of the simulated period")
        attacks: bool = True
        rate: float = Field(30.0, gt=0, description="mean events per workstation in a busy hour")

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        p = self.params
        self.enterprise = Enterprise(seed=p.seed, hosts=p.hosts, start=parse_time(p.start), hours=p.hours,
                                     attacks=p.attacks, rate=p.rate)

    def bounds(self, cursor: Cursor) -> tuple[datetime | None, datetime | None]:
        start = self.enterprise.start
        horizon = min(utcnow(), self.enterprise.end)
        return (start, horizon) if horizon > start else (None, None)

    def is_finite(self) -> bool:
        return self.enterprise.end <= utcnow()

    def read(self, start: datetime, end: datetime, cursor: Cursor) -> ReadResult:
        events = self.enterprise.events(start, end)  # already as finalize_events leaves them (tests/test_simulator.py)
        return ReadResult(events, {"read_until": end.isoformat()}, {"read": len(events)})
