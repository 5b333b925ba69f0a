"""Hubs: entities that touch so much of a window that they relate everything to everything.

A domain controller, a DNS server or a proxy is a peer of nearly every entity in a window. The
graph builders flag the related values such an entity carries (`bipartite`'s `related_fields`)
and triage (`triage/related.py`) keeps it out of the links that group alerts into incidents,
so both ask this module where the line is.
"""

from __future__ import annotations

MAX_RELATED = 20  # related entities kept per node or alert, most connected first
HUB_FRACTION = 0.1  # an entity touching this share of the window's entities is a hub ...
HUB_MIN_DEGREE = 6  # ... and at least this many (small windows have no hubs)


def hub_degree(window_entities: int) -> float:
    """How many of a window's entities an entity must touch to be one of its hubs."""
    return max(HUB_MIN_DEGREE, HUB_FRACTION * window_entities)
