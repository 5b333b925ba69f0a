"""One writer per state directory.

`run`, `train` and `deadletter replay` write checkpoints, model files and alerts. Two of them
on one state directory race: both train the same model version into the same file, both send
the same window's alerts. Each takes an exclusive lock on `<state_dir>/siem-gad.lock` first,
and a second one stops at once, naming the holder. The lock is an `flock`, released by the
kernel when its process ends however it ends, so a crash or a `kill -9` leaves no stale lock.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path
from typing import IO

LOCK_NAME = "siem-gad.lock"


class StateInUse(RuntimeError):
    """Another process holds the state directory's lock."""


def lock_state(state_dir: Path, command: str) -> IO[str]:
    """Take the state directory's lock for `command`; close the returned file to release it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LOCK_NAME
    handle = path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "a process that did not say which"
        handle.close()
        raise StateInUse(f"{state_dir} is in use by another siem-gad ({holder}); stop it first, or give this "
                         f"one another state_dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"siem-gad {command}, pid {os.getpid()}, {' '.join(sys.argv[1:])[:200]}\n")
    handle.flush()
    return handle
