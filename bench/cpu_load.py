"""CPU-bound processes beside a measurement: what "loaded" means in the benches' tables."""

from __future__ import annotations

import multiprocessing
import time
from contextlib import contextmanager
from typing import Iterator


def burn(stop_at: float) -> None:
    """Keep one core busy with Python arithmetic until `stop_at` (time.time())."""
    while time.time() < stop_at:
        sum(i * i for i in range(10_000))


@contextmanager
def cpu_load(processes: int, seconds: float = 300) -> Iterator[None]:
    """`processes` burners running for the block (at most `seconds`), stopped when it ends."""
    burners = [multiprocessing.Process(target=burn, args=(time.time() + seconds,)) for _ in range(processes)]
    for b in burners:
        b.start()
    try:
        yield
    finally:
        for b in burners:
            b.terminate()
