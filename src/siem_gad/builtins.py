"""The built-in sources, graph builders, detectors, sinks and log parsers, declared without importing them.

Each built-in plugin keeps the name of the module that holds its components and registers
them through the same hooks as any plugin, but as `"module:Class"` references: the module is
imported the first time its class is needed (a job is built, its parameters are validated).
So `siem-gad check`, `status` and `plugins` import only what the config uses, not torch's,
pandas' or the Elasticsearch client's modules for components nobody configured.

`tests/test_plugins.py` checks that every reference here resolves to a component of its kind
and that every component class in the built-in packages is declared here.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Callable

from .hookspecs import hookimpl

# module -> component kind -> config name -> class name in that module
BUILTIN_COMPONENTS: dict[str, dict[str, dict[str, str]]] = {
    "siem_gad.sources.csv_source": {"sources": {"csv": "CsvSource"}},
    "siem_gad.sources.simulate": {"sources": {"simulate": "SimulateSource"}},
    "siem_gad.sources.elasticsearch": {"sources": {"elasticsearch": "ElasticsearchSource"}},
    "siem_gad.sources.syslog": {"sources": {"syslog": "SyslogSource"}},
    "siem_gad.syslog.parsers": {"log_parsers": {
        "sshd": "SshdParser", "pam": "PamParser", "sudo": "SudoParser", "su": "SuParser", "accounts": "AccountParser",
        "passwords": "PasswordParser", "cron": "CronParser", "systemd_logind": "LogindParser",
        "netfilter": "FirewallParser"}},
    "siem_gad.graphs.bipartite": {"graph_builders": {"bipartite": "BipartiteGraphBuilder"}},
    "siem_gad.graphs.profile": {"graph_builders": {"profile": "ProfileGraphBuilder"}},
    "siem_gad.graphs.host_flow": {"graph_builders": {"host_flow": "HostFlowGraphBuilder"}},
    "siem_gad.graphs.temporal": {"graph_builders": {"temporal": "TemporalGraphBuilder"}},
    "siem_gad.detectors.iforest": {"detectors": {"iforest": "IsolationForestDetector"}},
    "siem_gad.detectors.gcn_hmm": {"detectors": {"gcn_hmm": "GcnHmmDetector"}},
    "siem_gad.detectors.vae": {"detectors": {"vae": "VaeDetector"}},
    "siem_gad.detectors.gmm": {"detectors": {"aegmm": "AeGmmDetector", "vaegmm": "VaeGmmDetector"}},
    "siem_gad.detectors.deep_sad": {"detectors": {"deep_sad": "DeepSadDetector"}},
    "siem_gad.detectors.lstm_ae": {"detectors": {"lstm_ae": "LstmAeDetector"}},
    "siem_gad.detectors.hetero_gnn": {"detectors": {"hetero_gnn": "HeteroGnnDetector"}},
    "siem_gad.detectors.cat_gnn": {"detectors": {"cat_gnn": "CatGnnDetector"}},
    "siem_gad.detectors.graph_ae": {"detectors": {"graph_ae": "GraphAeDetector"}},
    "siem_gad.detectors.rare_links": {"detectors": {"rare_links": "RareLinksDetector"}},
    "siem_gad.detectors.beacon": {"detectors": {"beacon": "BeaconDetector"}},
    "siem_gad.sinks.jsonl": {"sinks": {"jsonl": "JsonlSink"}},
    "siem_gad.sinks.elasticsearch": {"sinks": {"elasticsearch": "ElasticsearchSink"}},
    "siem_gad.sinks.stdout": {"sinks": {"stdout": "StdoutSink"}},
}


def declared_plugin(module: str, hooks: dict[str, str]) -> SimpleNamespace:
    """The plugin object for a built-in module: one `register_*` hook per kind it declares
    (`hooks` maps a kind to its hook name), each registering `"module:Class"` references."""
    plugin = SimpleNamespace()
    for kind, names in BUILTIN_COMPONENTS[module].items():
        setattr(plugin, hooks[kind], _registering(module, names))
    return plugin


def _registering(module: str, names: dict[str, str]) -> Callable:
    @hookimpl
    def register_components(register):
        for name, attr in names.items():
            register(name, f"{module}:{attr}")

    return register_components
