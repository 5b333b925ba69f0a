"""The `elasticsearch` sink: alerts into an Elasticsearch or OpenSearch index, exactly once.

Each alert is sent with the bulk API as `create` under its deterministic id, so a pass that is
repeated after a crash gets `409 version conflict` for what is already there and writes
nothing twice. Per item:

- 201 created: new; 409: already stored by an earlier try; both count as delivered;
- 429 and 5xx: retried (with the whole request's connection errors, 429 and 5xx) with
  exponential backoff and full jitter, `retry.attempts` times, then the write raises and the
  job's checkpoint stays where it was;
- anything else (mapping conflicts, rejected documents): kept in the dead-letter queue with
  the server's error; `siem-gad deadletter replay` sends them again after the fix.

So `write` returns only when every alert is stored or dead-lettered, as the checkpoint needs.
Incidents go to `incident_index` as bulk `index` (the newest version replaces the stored one
under the same id) and status documents to `status_index` as `create`; both with the same
retries. The alert index also carries analysts' verdicts (`siem_gad.feedback.*`): `annotate`
sets them, `verdicts` finds those set by hand in Kibana.

The index templates (explicit mappings for every alert field, see `elastic.mappings`) is put
on first use and by `siem-gad setup`; both are safe to repeat. Before every batch the sink
checks that the index exists (re-creating template and index when the cluster lost them), and
it refuses an index whose mapping contradicts the template, naming each field and both types.
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from ..components import Params
from ..errors import OperationalError
from ..elastic.client import RETRYABLE_STATUS, ConnectionParams, ElasticError, UsesCluster, describe_error
from ..elastic.mappings import document_mappings, field_types
from . import Alert, Rejected, Sink, alert_id_of, document_id

log = logging.getLogger(__name__)


class LifecycleParams(Params):
    policy: str = Field("siem-gad-alerts", description="ILM policy name")
    rollover_max_age: str = "30d"
    rollover_max_primary_shard_size: str = "50gb"
    delete_after: str | None = Field("365d", description="delete alerts this long after rollover; null keeps them")


class SinkRejected(OperationalError):
    """The sink could not store a batch even after retrying; the checkpoint must not move."""


class ElasticsearchSink(UsesCluster, Sink):
    kinds: ClassVar[frozenset[str]] = frozenset({"incident", "status"})

    class Params(ConnectionParams):
        index: str = Field("siem-gad-alerts", description="alert index (or data stream) name")
        template: str = Field("siem-gad-alerts", description="name of the index template")
        incident_index: str = Field("siem-gad-incidents", description="incident index (template of the same name)")
        status_index: str = Field("siem-gad-status", description="heartbeat index (template of the same name)")
        data_stream: bool = Field(False, description="write to a data stream (Elasticsearch; needs op_type create)")
        dynamic: Literal["strict", "true", "false"] = Field(
            "strict", description="fields an alert has beyond the mapping: reject (strict), map, or keep unindexed")
        extra_mappings: dict[str, Any] = Field(default_factory=dict,
                                               description="mapping properties for fields added by enrich_alert plugins")
        shards: int = Field(1, ge=1)
        replicas: int | None = Field(None, ge=0, description="default: the cluster's")
        bulk_size: int = Field(500, ge=1, le=10_000, description="alerts per bulk request")
        refresh: bool = Field(False, description="refresh after each batch (tests, demos); costs throughput")
        ilm: LifecycleParams | None = Field(None, description="Elasticsearch ILM policy (needs data_stream)")

        @model_validator(mode="after")
        def _ilm_needs_data_stream(self) -> "ElasticsearchSink.Params":
            if self.ilm is not None and not self.data_stream:
                raise ValueError("ilm rolls indices over, which needs data_stream: true")
            return self

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self._ready = False

    # ------------------------------------------------------------------ setup
    def index_of(self, kind: str) -> str:
        p = self.params
        return {"alert": p.index, "incident": p.incident_index, "status": p.status_index}[kind]

    def template_body(self, kind: str = "alert") -> dict[str, Any]:
        p = self.params
        stream = p.data_stream and kind == "alert"  # incidents are rewritten: never a data stream
        settings: dict[str, Any] = {"number_of_shards": p.shards}
        if p.replicas is not None:
            settings["number_of_replicas"] = p.replicas
        if p.ilm is not None and stream:
            settings["index.lifecycle.name"] = p.ilm.policy
        index = self.index_of(kind)
        body: dict[str, Any] = {
            "index_patterns": [index] if stream else [f"{index}*"],
            "priority": 200,
            "template": {"settings": settings,
                         "mappings": document_mappings(kind, p.dynamic, p.extra_mappings if kind == "alert" else None)},
            "_meta": {"managed_by": "siem-gad"},
        }
        if stream:
            body["data_stream"] = {}
        return body

    def template_name(self, kind: str) -> str:
        return self.params.template if kind == "alert" else self.index_of(kind)

    def lifecycle_body(self) -> dict[str, Any]:
        ilm = self.params.ilm
        assert ilm is not None
        phases: dict[str, Any] = {"hot": {"actions": {"rollover": {
            "max_age": ilm.rollover_max_age, "max_primary_shard_size": ilm.rollover_max_primary_shard_size}}}}
        if ilm.delete_after:
            phases["delete"] = {"min_age": ilm.delete_after, "actions": {"delete": {}}}
        return {"policy": {"phases": phases, "_meta": {"managed_by": "siem-gad"}}}

    def setup(self) -> list[str]:
        """Templates and indices for alerts, incidents and status documents (safe to repeat)."""
        p, done = self.params, []
        if p.ilm is not None:
            self.client.put_lifecycle_policy(p.ilm.policy, self.lifecycle_body())
            done.append(f"ILM policy {p.ilm.policy}")
        for kind in ("alert", "incident", "status"):
            done += self._setup_index(kind)
        self._ready = True
        return done

    def _setup_index(self, kind: str) -> list[str]:
        index, template = self.index_of(kind), self.template_name(kind)
        body = self.template_body(kind)
        self.client.put_index_template(template, body)
        done = [f"index template {template} for {index}"]
        if "data_stream" in body:
            return done
        if self.client.index_exists(index):
            self.verify_mapping(kind)
            # New fields (extra_mappings) reach an index that already exists; a type change cannot.
            self.client.put_mapping(index, {"properties": body["template"]["mappings"]["properties"]})
            done.append(f"index {index} exists; mappings updated")
        else:
            self.client.create_index(index)
            self.verify_mapping(kind)
            done.append(f"index {index} created")
        return done

    def mapping_conflicts(self, kind: str = "alert") -> list[str]:
        """Fields whose type in the existing index differs from the template's, named with both types."""
        index = self.index_of(kind)
        wanted = field_types(self.template_body(kind)["template"]["mappings"])
        actual = field_types(self.client.get_mapping(index))
        return [f"{name}: index {index} maps it as {actual[name]}, the template as {wanted_kind}"
                for name, wanted_kind in sorted(wanted.items()) if name in actual and actual[name] != wanted_kind]

    def verify_mapping(self, kind: str = "alert") -> None:
        """Refuse to write into an index whose mapping contradicts the template (an index that
        was auto-created with dynamic mapping, or made by hand): stored documents would be unusable."""
        conflicts = self.mapping_conflicts(kind)
        if conflicts:
            shown = "; ".join(conflicts[:10]) + (f"; and {len(conflicts) - 10} more" if len(conflicts) > 10 else "")
            raise SinkRejected(f"{self.name}: index {self.index_of(kind)} does not match template "
                               f"{self.template_name(kind)}: {shown}. Reindex it or delete it, then run `siem-gad setup`")

    def ensure_index(self, kind: str = "alert") -> None:
        """Before each write: the template and the index exist (re-created from the template if
        the cluster lost them: a restore, a deletion, a new cluster), with a matching mapping.
        Without this a bulk write would auto-create the index with dynamic mapping."""
        if not self._ready:
            self.setup()
            return
        if (self.params.data_stream and kind == "alert") or self.client.index_exists(self.index_of(kind)):
            return
        log.warning("%s: index %s is missing (deleted, restored or a new cluster); re-creating it from template %s",
                    self.name, self.index_of(kind), self.template_name(kind))
        self._setup_index(kind)

    # ------------------------------------------------------------------ writing
    def write(self, alerts: list[Alert]) -> int:
        new, rejected = self._store("alert", alerts)
        if rejected:
            assert self.state is not None, "the sink is bound to a state store by the host"
            self.state.add_dead_letters(self.name, rejected)
            log.error("%s: %d alert(s) rejected by %s and kept in the dead-letter queue (first: %s); "
                      "fix the cause, then `siem-gad deadletter replay`", self.name, len(rejected), self.params.index,
                      rejected[0][2])
        return new

    def put(self, kind: str, documents: list[dict[str, Any]]) -> Rejected:
        return self._store(kind, documents)[1]

    def find(self, alert_id: str) -> Alert | None:
        return self.client.get_document(self.params.index, alert_id)

    def annotate(self, alert_id: str, fields: dict[str, Any]) -> bool:
        self.ensure_index()
        response = self.client.bulk([{"update": {"_index": self.params.index, "_id": alert_id}}, {"doc": fields}])
        result = next(iter(response["items"][0].values()))
        status = int(result.get("status", 500))
        if status == 404:
            return False
        if status >= 300:
            raise SinkRejected(f"{self.name}: could not set feedback on alert {alert_id}: {_reason(result)}")
        return True

    def verdicts(self) -> list[Alert]:
        if not self.client.index_exists(self.params.index):
            return []
        found: list[Alert] = []
        body: dict[str, Any] = {"size": 500, "query": {"exists": {"field": "siem_gad.feedback.verdict"}},
                                "sort": [{"event.id": "asc"}]}
        while True:
            hits = self.client.search(body, index=self.params.index)["hits"]["hits"]
            found += [hit["_source"] for hit in hits]
            if len(hits) < body["size"]:
                return found
            body["search_after"] = hits[-1]["sort"]

    def replay(self, alerts: list[Alert]) -> dict[str, str]:
        _, rejected = self._store("alert", alerts)
        return {alert_id_of(doc): error for doc, _, error in rejected}

    def _store(self, kind: str, documents: list[dict[str, Any]]) -> tuple[int, Rejected]:
        if not documents:
            return 0, []
        self.ensure_index(kind)
        new, rejected = 0, []
        size = self.params.bulk_size
        for begin in range(0, len(documents), size):
            chunk_new, chunk_rejected = self._bulk(kind, documents[begin:begin + size])
            new += chunk_new
            rejected += chunk_rejected
        if self.params.refresh:
            self.client.refresh(self.index_of(kind))
        return new, rejected

    def _bulk(self, kind: str, documents: list[dict[str, Any]]) -> tuple[int, Rejected]:
        """One bulk request, retrying what may succeed later; return (new, rejected)."""
        delays = self.params.retry.delays()
        pending, new, rejected, attempt = documents, 0, [], 0
        while pending:
            retry_later: list[dict[str, Any]] = []
            last_error = ""
            try:
                response = self.client.bulk(self._operations(kind, pending))
            except ElasticError as exc:
                if not exc.retryable:
                    raise SinkRejected(f"{self.name}: bulk request refused: {exc}") from None
                retry_later, last_error = pending, str(exc)
            else:
                for document, item in zip(pending, response["items"]):
                    result = next(iter(item.values()))
                    status = int(result.get("status", 500))
                    if status in (200, 201):
                        new += 1
                    elif status == 409:
                        continue  # stored by an earlier try: exactly once
                    elif status in RETRYABLE_STATUS:
                        retry_later.append(document)
                        last_error = _reason(result)
                    else:
                        rejected.append((document, status, _reason(result)))
            pending = retry_later
            if pending:
                if attempt >= len(delays):
                    raise SinkRejected(f"{self.name}: {len(pending)} {kind} document(s) not stored after "
                                       f"{self.params.retry.attempts} tries: {last_error}")
                log.warning("%s: %d %s document(s) not stored yet (%s); retry %d of %d in %.1fs", self.name,
                            len(pending), kind, last_error, attempt + 1, len(delays), delays[attempt])
                time.sleep(delays[attempt])
                attempt += 1
        return new, rejected

    def _operations(self, kind: str, documents: list[dict[str, Any]]) -> list[dict]:
        """Alerts and status documents are created once; an incident replaces its older version."""
        op = "index" if kind == "incident" else "create"
        operations: list[dict] = []
        for document in documents:
            operations.append({op: {"_index": self.index_of(kind), "_id": document_id(document)}})
            operations.append(document)
        return operations


def configured_indices(app_config, sink: str | None = None) -> dict[str, str]:
    """{'index', 'incident_index', 'status_index'} of the sink `configured_alert_index` picks."""
    fields = ElasticsearchSink.Params.model_fields
    specs = {name: spec for name, spec in (app_config.sinks.items() if app_config else []) if spec.type == "elasticsearch"}
    chosen = specs.get(sink) if sink else next(iter(specs.values()), None)
    params = chosen.params if chosen is not None else {}
    return {key: params.get(key, fields[key].default) for key in ("index", "incident_index", "status_index")}


def configured_alert_index(app_config, sink: str | None = None) -> str:
    """The alert index of the config's `sink` (or of its first elasticsearch sink), else the
    sink's default index; KeyError naming the choices when `sink` is not an elasticsearch sink."""
    default = ElasticsearchSink.Params.model_fields["index"].default
    specs = {name: spec for name, spec in (app_config.sinks.items() if app_config else []) if spec.type == "elasticsearch"}
    if sink:
        if sink not in specs:
            raise KeyError(f"no elasticsearch sink named {sink!r} (have: {', '.join(specs) or 'none'})")
        return specs[sink].params.get("index", default)
    return next(iter(specs.values())).params.get("index", default) if specs else default


def _reason(result: dict) -> str:
    return describe_error(result.get("error"), result.get("status"))
