"""Running jobs: once (catch up and exit) or on their schedules with APScheduler 3.

Each job runs in its own scheduler thread, never two passes of one job at a time
(`max_instances=1`, missed runs coalesced). SIGINT/SIGTERM set a stop event: a pass in
progress finishes its current batch (whose checkpoint is committed), then everything exits.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Iterable

from .pipeline import App, PassOutcome

log = logging.getLogger(__name__)


def install_signal_handlers(stop: threading.Event) -> None:
    def handle(signum: int, frame: object) -> None:
        if stop.is_set():
            log.warning("second signal: exiting now")
            raise SystemExit(130)
        log.warning("%s received: finishing the current batch, then stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def start_sources(app: App, jobs: Iterable[str]) -> None:
    """Start the sources' background work (syslog listeners) before any pass."""
    for name in sorted({app.config.jobs[j].source for j in jobs}):
        app.source(name).start()


def run_once(app: App, jobs: Iterable[str], stop: threading.Event, progress: bool = False) -> list[PassOutcome]:
    """Process everything that is due for each job, then return."""
    jobs = list(jobs)
    start_sources(app, jobs)
    outcomes = []
    for name in jobs:
        if stop.is_set():
            break
        outcome = app.job(name).run_pass(stop, progress=progress)
        log.info("%s: %s%s (%d windows, %d events, %d alerts)", name, outcome.status,
                 f": {outcome.message}" if outcome.message else "", outcome.windows, outcome.events, outcome.alerts)
        if outcome.quarantined:
            log.warning("%s: %d malformed record(s) quarantined this run; see `siem-gad status` and the source's "
                        "quarantine file", name, outcome.quarantined)
        outcomes.append(outcome)
    return outcomes


def run_forever(app: App, jobs: Iterable[str], stop: threading.Event) -> None:
    """Run each job on its `schedule` until a signal arrives; catches up first."""
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    from .timeutil import utcnow

    jobs = list(jobs)
    start_sources(app, jobs)
    scheduler = BackgroundScheduler(timezone="UTC")
    for name in jobs:
        job = app.job(name)
        scheduler.add_job(job.run_pass, IntervalTrigger(seconds=job.config.schedule.total_seconds()), args=[stop],
                          id=name, name=name, max_instances=1, coalesce=True, next_run_time=utcnow(),
                          misfire_grace_time=None)
    scheduler.start()
    log.info("scheduler started: %s", ", ".join(f"{j.id} every {j.trigger.interval}" for j in scheduler.get_jobs()))
    try:
        while not stop.wait(1.0):
            pass
    finally:
        scheduler.shutdown(wait=True)
        log.info("scheduler stopped")
