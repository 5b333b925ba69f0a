"""The plugin hooks of siem-gad.

A plugin is a module (or any object) with functions decorated by `siem_gad.hookimpl` and named
after the hooks below. Built-in sources, graph builders, detectors and sinks register through
these same hooks. Every `register(name, cls)` callback also takes a `"module:Class"` string
for `cls`, imported only when a config uses the component (how the built-ins stay cheap). Each hook is documented with its signature in docs/plugins.md, and
tests/test_hook_contract.py fails when a hook lacks a docstring, documentation or a test.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("siem_gad")
hookimpl = pluggy.HookimplMarker("siem_gad")


@hookspec
def register_sources(register):
    """Register event sources.

    Call `register(name, cls)` once per source class. `name` is what a config's
    `sources.<key>.type` refers to; `cls` subclasses `siem_gad.sources.Source`.
    """


@hookspec
def register_graph_builders(register):
    """Register graph builders that turn a window of events into a graph.

    Call `register(name, cls)`; `cls` subclasses `siem_gad.graphs.GraphBuilder`. A job's
    `graph.type` selects one.
    """


@hookspec
def register_detectors(register):
    """Register anomaly detectors.

    Call `register(name, cls)`; `cls` subclasses `siem_gad.detectors.Detector` (fit / score /
    explain, saved and loaded as weights-only files). A job's `detectors.<key>.type` selects one.
    """


@hookspec
def register_sinks(register):
    """Register alert sinks (destinations for alert documents).

    Call `register(name, cls)`; `cls` subclasses `siem_gad.sinks.Sink`. Sinks must be
    idempotent on the alert id: a repeated pass hands them the same ids again.
    """


@hookspec
def register_log_parsers(register):
    """Register syslog message parsers (for the `syslog` source).

    Call `register(name, cls)`; `cls` subclasses `siem_gad.syslog.parsers.LogParser`: its
    `programs` names the programs it reads (empty: any) and `parse(record)` returns ECS fields
    or None. Parsers for a record's program are tried before the generic ones.
    """


@hookspec
def enrich_events(events, job):
    """Add or fix columns of a window batch of events before the graph is built.

    `events` is a pandas DataFrame with ECS dotted column names; `job` is the job's name.
    Return a new DataFrame to replace it, or None after modifying it in place. Do not drop
    `@timestamp` or `event.id`.
    """


@hookspec
def enrich_alert(alert, job):
    """Add context to an alert document before it is written to the sinks.

    `alert` is the ECS alert as a nested dict; modify it in place (for example add
    `siem_gad.asset.owner`). `job` is the job's name. Do not change `siem_gad.alert_id`
    or `event.id`: they keep writes idempotent.
    """


@hookspec
def register_commands(cli):
    """Add commands to the `siem-gad` command line.

    `cli` is the top-level click group: decorate functions with `@cli.command()`.
    """
