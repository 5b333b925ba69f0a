"""Keep freed memory in the process instead of handing it back to the kernel after each step.

glibc's malloc serves large blocks (above a threshold that adapts up to 32 MiB) with fresh
`mmap` pages and returns them at `free`. A graph model's training step allocates and frees
the same dozen 4-12 MiB tensors every epoch, so each step faults in thousands of new pages;
in a virtual machine a page fault is expensive, and on the 1 M-event config this made a
`gcn_hmm` step 15-25 % slower (docs/benchmarks.md). PyTorch's CPU tuning guide suggests
jemalloc or tcmalloc for the same reason; setting glibc's own thresholds gets the effect
without another allocator: blocks up to 32 MiB come from the heap, and up to 256 MiB of free
heap is kept for reuse.

Applied once by `App.open` (and the benches). It changes nothing where the C library is not
glibc, or where the operator set `MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_` (glibc
reads those at start-up and they win).
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for this setting on 64-bit systems
TRIM_THRESHOLD = 256 << 20
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's thresholds once per process; True when they are in effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if any(name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt  # glibc's name; elsewhere this fails and nothing changes
    except (OSError, AttributeError):
        return False
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    log.debug("malloc keeps freed blocks up to %d MiB: %s", MMAP_THRESHOLD >> 20, _applied)
    return _applied
