"""Compiled single passes for graph building (numba, cached on disk after the first run).

Each kernel walks the events (or edges) once, in the order they come. Events are sorted by
window, so marking what a window has seen with the window's number ("stamps") replaces both
hashing and per-window resets. Imported only when graphs are built, never on the CLI's
start-up path.
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True)
def dense_ids(keys, size):
    """Number the distinct values of `keys` (all in [0, size)) in order of first occurrence.

    Returns (id of each key, the distinct keys by id). The slot array is int32 to halve the
    cache misses of this random-access pass.
    """
    slot = np.full(size, -1, np.int32)
    ids = np.empty(len(keys), np.int64)
    distinct = np.empty(len(keys), np.int64)
    count = 0
    for i in range(len(keys)):
        key = keys[i]
        found = slot[key]
        if found < 0:
            found = count
            slot[key] = count
            distinct[count] = key
            count += 1
        ids[i] = found
    return ids, distinct[:count].copy()


# The two passes of the `bipartite` builder write into arrays the caller allocates with numpy:
# numpy asks the kernel for huge pages on large arrays, and on these machines faulting in
# fresh 4 KiB pages cost more than the passes themselves.


@nb.njit(cache=True, nogil=True)
def window_edges(stamps, start_ns, size_ns, src, dst, n_dst, nbytes, outcome, failed, port, n_ports,
                 slot, event_edge, edges_per_window, events_per_window, edge_key, edge_sums):
    """The event pass: each event's window and edge, and per edge its key and sums.

    An edge is a (window, key) combination, key = source * n_dst + target in [0, len(slot)).
    Events outside the grid (len(events_per_window) windows) or without both entities
    (code -1) get edge -1. `nbytes` may hold NaN (not summed); `outcome` codes index `failed`
    (1.0 = a failure; -1 = missing); `port` codes (0 .. n_ports-1, -1 = missing) are counted
    distinct per edge. `edge_sums` rows are (events, bytes, failures, distinct ports).

    Events must come in non-decreasing window order (sources deliver them by time); if not,
    the pass stops and returns -1 so the caller can order them first. Else it returns the
    number of edges m; edges are numbered in order of first occurrence, hence by window.

    `slot` (int32, all -1) holds each key's latest edge: edges are numbered window by window,
    so one at or after the current window's first edge is this window's. One random access
    per event into 4 bytes a key (the table of all keys must stay in cache), and no resets
    between windows. Distinct ports use an (edge within the
    window, port) marker stamped by window, grown as windows widen.
    """
    n_windows = len(events_per_window)
    width = max(n_ports, 1)
    marker = np.full(4096 * width, -1, np.int32)
    m = 0
    first = 0  # first edge of the current window
    last = -1
    w = -1
    lo = hi = start_ns  # the current window's [lo, hi): sorted events divide once per window
    for i in range(len(stamps)):
        t = stamps[i]
        if t < lo or t >= hi:
            w = (t - start_ns) // size_ns
            lo = start_ns + w * size_ns
            hi = lo + size_ns
        s = src[i]
        d = dst[i]
        if s < 0 or d < 0 or w < 0 or w >= n_windows:
            event_edge[i] = -1
            continue
        if w != last:
            if w < last:
                return -1
            last = w
            first = m
        events_per_window[w] += 1
        k = np.int64(s) * n_dst + d
        e = slot[k]
        if e < first:  # -1, or an edge of an earlier window: a new edge of this one
            e = m
            slot[k] = e
            edges_per_window[w] += 1
            edge_key[e] = k
            edge_sums[e, 0] = 0.0
            edge_sums[e, 1] = 0.0
            edge_sums[e, 2] = 0.0
            edge_sums[e, 3] = 0.0
            m += 1
        event_edge[i] = e
        edge_sums[e, 0] += 1.0
        b = nbytes[i]
        if b == b:
            edge_sums[e, 1] += b
        o = outcome[i]
        if o >= 0:
            edge_sums[e, 2] += failed[o]
        c = port[i]
        if c >= 0:
            at = (e - first) * width + c
            if at >= len(marker):
                grown = np.full(max(2 * len(marker), at + width), -1, np.int32)
                grown[:len(marker)] = marker
                marker = grown
            if marker[at] != w:
                marker[at] = w
                edge_sums[e, 3] += 1.0
    return m


@nb.njit(cache=True, nogil=True)
def window_nodes(edge_ptr, edge_key, n_src, n_dst, edge_sums, local, kind, value, node_ptr, x, edge_attr):
    """The edge pass: nodes, node features and edge features, before log scaling.

    Nodes are (window, side, entity), numbered in edge order within each window; edges of
    window w are edge_ptr[w] .. edge_ptr[w + 1]. Writes `local` (each edge's source and target
    node within its window), each node's `kind` (0 source, 1 target) and `value` index (the
    source code, or n_src + the target code), `node_ptr` (first node of each window, and the
    end), `x` rows in bipartite.NODE_FEATURES order (side, degree, events, bytes, largest edge
    bytes, services = distinct peer:port pairs, failures, failure ratio, rare peers = peers
    with no other neighbour) and `edge_attr` rows (events, bytes, ports, failure ratio).
    Returns the number of nodes.
    """
    src_stamp = np.full(n_src, -1, np.int64)
    dst_stamp = np.full(n_dst, -1, np.int64)
    src_slot = np.empty(n_src, np.int64)
    dst_slot = np.empty(n_dst, np.int64)
    k = 0
    for w in range(len(edge_ptr) - 1):
        first_node = k
        node_ptr[w] = k
        # The source and target branches are the same on purpose: a shared inlined helper
        # returning (node, k) measured 30 ms slower on 1M events (bench/graph_build.py).
        for j in range(edge_ptr[w], edge_ptr[w + 1]):
            s = edge_key[j] // n_dst
            d = edge_key[j] - s * n_dst
            if src_stamp[s] != w:
                src_stamp[s] = w
                src_slot[s] = k
                kind[k], value[k] = 0, s
                x[k, :] = 0.0
                x[k, 0] = 1.0
                k += 1
            a = src_slot[s]
            if dst_stamp[d] != w:
                dst_stamp[d] = w
                dst_slot[d] = k
                kind[k], value[k] = 1, n_src + d
                x[k, :] = 0.0
                k += 1
            b = dst_slot[d]
            local[0, j] = a - first_node
            local[1, j] = b - first_node
            count, total, fails, ports = edge_sums[j, 0], edge_sums[j, 1], edge_sums[j, 2], edge_sums[j, 3]
            for node in (a, b):
                x[node, 1] += 1.0
                x[node, 2] += count
                x[node, 3] += total
                x[node, 4] = max(x[node, 4], total)
                x[node, 5] += ports
                x[node, 6] += fails
            edge_attr[j, 0] = count
            edge_attr[j, 1] = total
            edge_attr[j, 2] = ports
            edge_attr[j, 3] = fails / max(count, 1.0)
        for j in range(edge_ptr[w], edge_ptr[w + 1]):
            a = local[0, j] + first_node
            b = local[1, j] + first_node
            if x[b, 1] == 1.0:
                x[a, 8] += 1.0
            if x[a, 1] == 1.0:
                x[b, 8] += 1.0
    node_ptr[len(edge_ptr) - 1] = k
    for i in range(k):
        x[i, 7] = x[i, 6] / max(x[i, 2], 1.0)
    return k
