"""One thread policy for the process: how many threads torch, BLAS (numpy, scikit-learn) and
numba may each use. Nothing else in siem-gad sets them.

Why: each of those libraries starts a pool as wide as the machine. On a shared SIEM host the
pools fight each other and the other processes: scoring the default config ran 5x slower with
a second CPU-bound process beside it, and training `gcn_hmm` took 214 s with torch's default
threads against 42 s with one. The window graphs a SIEM scores are small, so one intra-op
thread per library is the right default (`threads: auto`); the graph builder runs its own
threads between those steps, never at the same time, so the two do not multiply.

`apply` sets the environment variables the libraries read when they load (they also reach
subprocesses) and, for those already loaded, their runtime setters.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

log = logging.getLogger(__name__)
ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


@dataclass(frozen=True)
class ThreadPolicy:
    threads: int  # intra-op threads for torch, BLAS and numba
    source: str  # why: "config", "environment (OMP_NUM_THREADS)", or "auto"

    def describe(self) -> str:
        return f"{self.threads} thread(s) each for torch, BLAS and numba ({self.source})"

    def apply(self) -> "ThreadPolicy":
        """Make the libraries use `threads` (loaded ones now, the others when they load)."""
        for name in ENV_VARS:
            if name == "NUMBA_NUM_THREADS" and "numba" in sys.modules:
                continue  # numba refuses to compile once this variable changes under its pool
            os.environ[name] = str(self.threads)
        if "torch" in sys.modules:
            import torch

            torch.set_num_threads(self.threads)
        if "numba" in sys.modules:
            import numba

            numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # scikit-learn brings it; without it only the variables apply
            return self
        threadpool_limits(self.threads, user_api="blas")
        return self


def decide(setting: int | str = "auto", environ: dict[str, str] | None = None) -> ThreadPolicy:
    """The policy for a `threads` setting: a number is used as given; `auto` keeps an
    OMP_NUM_THREADS the operator exported, else uses 1."""
    environ = os.environ if environ is None else environ
    if setting != "auto":
        return ThreadPolicy(max(1, int(setting)), "config")
    exported = environ.get("OMP_NUM_THREADS", "")
    if exported.isdigit() and int(exported) > 0:
        return ThreadPolicy(int(exported), "environment (OMP_NUM_THREADS)")
    return ThreadPolicy(1, "auto: window graphs are small; one thread per library keeps a shared host fair")
