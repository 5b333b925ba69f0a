"""One small client interface over Elasticsearch 8/9 and OpenSearch 2/3.

The two official clients differ in the calls siem-gad needs (point in time, bulk bodies,
exceptions). `connect()` picks one, from the config's `flavor` or, with `flavor: auto`, from
the cluster's root endpoint, and wraps it in a `SiemClient` with the handful of calls the
source, the sink and `siem-gad setup` use. Every failure comes out as `ElasticError` with an
HTTP status (0 for connection errors) and `retryable` set for 429, 5xx and connection
errors; `with_retries` retries those with exponential backoff and full jitter. The clients'
own retries are turned off so that this is the one retry policy.

Heavy imports (the two client libraries) happen inside `connect()`.
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
import random
import time
import urllib.error
import urllib.request
import ssl
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar

from pydantic import Field, SecretStr, model_validator

from ..components import Params
from ..errors import OperationalError
from ..redact import redact

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class ElasticError(OperationalError):
    """A failed request: `status` is the HTTP status, 0 when the cluster could not be reached."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(redact(message))
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.status == 0 or self.status in RETRYABLE_STATUS


def describe_error(error: Any, status: int | None = None) -> str:
    """'type: reason (cause)' from a cluster's error object (a response body's `error`, or a bulk
    item's), so that a rejection names the field and the problem, not only an exception class."""
    if isinstance(error, dict) and "error" in error and isinstance(error["error"], (dict, str)):
        error = error["error"]
    if isinstance(error, dict):
        text = f"{error.get('type', 'error')}: {error.get('reason', '')}".rstrip(": ")
        cause = error.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason") and cause.get("reason") != error.get("reason"):
            text += f" ({cause['reason']})"
        return text
    return str(error or f"HTTP {status}")


class RetryPolicy(Params):
    attempts: int = Field(8, ge=1, description="tries per request before giving up")
    initial: float = Field(0.5, gt=0, description="seconds before the first retry; doubles each time")
    maximum: float = Field(30.0, gt=0, description="cap on the wait between two tries, in seconds")

    def delays(self) -> list[float]:
        """Full-jitter exponential backoff: the wait before try n+1 is uniform in [0, min(max, initial*2^n)]."""
        return [random.uniform(0, min(self.maximum, self.initial * 2 ** n)) for n in range(self.attempts - 1)]


def with_retries(call: Callable[[], T], what: str, policy: RetryPolicy, sleep: Callable[[float], None] = time.sleep) -> T:
    """Run `call`, retrying retryable ElasticErrors per `policy`; re-raise the last one."""
    delays = policy.delays()
    for attempt in range(policy.attempts):
        try:
            return call()
        except ElasticError as exc:
            if not exc.retryable or attempt == len(delays):
                raise
            wait = delays[attempt]
            log.warning("%s failed (%s); retry %d of %d in %.1fs", what, exc, attempt + 1, len(delays), wait)
            sleep(wait)
    raise AssertionError("unreachable")


class ConnectionParams(Params):
    """How to reach the cluster; shared by the `elasticsearch` source and sink."""

    hosts: list[str] = Field(default_factory=lambda: ["https://localhost:9200"], min_length=1)
    flavor: Literal["auto", "elasticsearch", "opensearch"] = Field(
        "auto", description="which client to use; auto asks the root endpoint")
    api_key: SecretStr | None = Field(None, description="Elasticsearch API key (the base64 'id:key' form)")
    username: str | None = None
    password: SecretStr | None = None
    bearer_token: SecretStr | None = None
    ca_file: Path | None = Field(None, description="PEM file of the CA that signed the cluster's certificate")
    verify_certs: bool = True
    request_timeout: float = Field(30.0, gt=0, description="seconds per request")
    retry: RetryPolicy = RetryPolicy()
    node_class: str | None = Field(
        None, description="advanced: 'module:Class' of an elastic_transport node for the elasticsearch client")

    @model_validator(mode="after")
    def _one_auth(self) -> "ConnectionParams":
        methods = [m for m, set_ in (("api_key", self.api_key), ("username/password", self.username),
                                     ("bearer_token", self.bearer_token)) if set_]
        if len(methods) > 1:
            raise ValueError(f"choose one way to authenticate, not {' and '.join(methods)}")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self

    def auth_header(self) -> dict[str, str]:
        if self.api_key:
            return {"Authorization": f"ApiKey {self.api_key.get_secret_value()}"}
        if self.bearer_token:
            return {"Authorization": f"Bearer {self.bearer_token.get_secret_value()}"}
        if self.username and self.password:
            token = base64.b64encode(f"{self.username}:{self.password.get_secret_value()}".encode()).decode()
            return {"Authorization": f"Basic {token}"}
        return {}

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if not self.verify_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def detect_flavor(params: ConnectionParams) -> str:
    """'elasticsearch' or 'opensearch', from `version.distribution` at the root endpoint."""
    url = params.hosts[0].rstrip("/") + "/"
    request = urllib.request.Request(url, headers={"Accept": "application/json", **params.auth_header()})
    try:
        with urllib.request.urlopen(request, timeout=params.request_timeout,
                                    context=params.ssl_context() if url.startswith("https") else None) as response:
            info = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ElasticError(f"GET {url}: HTTP {exc.code} (check the credentials)", exc.code) from None
    except (OSError, ValueError) as exc:
        raise ElasticError(f"GET {url}: {exc}") from None
    return "opensearch" if info.get("version", {}).get("distribution") == "opensearch" else "elasticsearch"


class SiemClient(ABC):
    """The calls siem-gad makes; one subclass per client library."""

    flavor: str

    def __init__(self, params: ConnectionParams):
        self.params = params

    def call(self, what: str, fn: Callable[[], T], retry: bool = True) -> T:
        wrapped = lambda: self._translate(what, fn)  # noqa: E731
        return with_retries(wrapped, what, self.params.retry) if retry else wrapped()

    @abstractmethod
    def _translate(self, what: str, fn: Callable[[], T]) -> T:
        """Run fn, turning the library's exceptions into ElasticError."""

    @abstractmethod
    def search(self, body: dict, index: str | None = None) -> dict: ...

    @abstractmethod
    def open_pit(self, index: str, keep_alive: str) -> str: ...

    @abstractmethod
    def close_pit(self, pit_id: str) -> None: ...

    @abstractmethod
    def bulk(self, operations: list[dict]) -> dict: ...

    def get_document(self, index: str, doc_id: str) -> dict | None:
        """The `_source` of a document, or None when there is none with that id."""
        try:
            return self.call("get", lambda: self._get_source(index, doc_id))
        except ElasticError as exc:
            if exc.status == 404:
                return None
            raise

    @abstractmethod
    def _get_source(self, index: str, doc_id: str) -> dict: ...

    @abstractmethod
    def put_index_template(self, name: str, body: dict) -> None: ...

    @abstractmethod
    def put_mapping(self, index: str, body: dict) -> None: ...

    @abstractmethod
    def get_mapping(self, index: str) -> dict:
        """The index's mappings (`{"properties": ...}`); for an alias or pattern, the first index's."""

    @abstractmethod
    def index_exists(self, index: str) -> bool: ...

    @abstractmethod
    def create_index(self, index: str) -> None: ...

    @abstractmethod
    def refresh(self, index: str) -> None: ...

    @abstractmethod
    def put_lifecycle_policy(self, name: str, body: dict) -> None: ...

    @abstractmethod
    def close(self) -> None: ...


def _status_of(exc: Exception) -> int:
    meta = getattr(exc, "meta", None)
    status = getattr(meta, "status", None) if meta is not None else getattr(exc, "status_code", None)
    return status if isinstance(status, int) else 0


class _ElasticsearchClient(SiemClient):
    flavor = "elasticsearch"

    def __init__(self, params: ConnectionParams):
        super().__init__(params)
        from elasticsearch import Elasticsearch

        options: dict[str, Any] = {"request_timeout": params.request_timeout, "max_retries": 0,
                                   "retry_on_timeout": False, "verify_certs": params.verify_certs}
        if params.ca_file:
            options["ca_certs"] = str(params.ca_file)
        if params.api_key:
            options["api_key"] = params.api_key.get_secret_value()
        elif params.bearer_token:
            options["bearer_auth"] = params.bearer_token.get_secret_value()
        elif params.username and params.password:
            options["basic_auth"] = (params.username, params.password.get_secret_value())
        if params.node_class:
            options["node_class"] = load_object(params.node_class)
        if not params.verify_certs:
            options["ssl_show_warn"] = False
        self.es = Elasticsearch(params.hosts, **options)

    def _translate(self, what: str, fn: Callable[[], T]) -> T:
        from elastic_transport import ApiError, TransportError

        try:
            return fn()
        except ApiError as exc:
            detail = describe_error(exc.body) if isinstance(exc.body, dict) else exc.message
            raise ElasticError(f"{what}: HTTP {exc.meta.status}: {detail}", exc.meta.status) from None
        except TransportError as exc:
            raise ElasticError(f"{what}: {exc.message}") from None

    def search(self, body: dict, index: str | None = None) -> dict:
        return self.call("search", lambda: self.es.search(index=index, body=body).body)

    def open_pit(self, index: str, keep_alive: str) -> str:
        return self.call("open point in time", lambda: self.es.open_point_in_time(index=index, keep_alive=keep_alive)["id"])

    def close_pit(self, pit_id: str) -> None:
        self.call("close point in time", lambda: self.es.close_point_in_time(id=pit_id), retry=False)

    def bulk(self, operations: list[dict]) -> dict:
        return self._translate("bulk", lambda: self.es.bulk(operations=operations).body)

    def _get_source(self, index: str, doc_id: str) -> dict:
        return self.es.get(index=index, id=doc_id).body["_source"]

    def put_index_template(self, name: str, body: dict) -> None:
        self.call("put index template", lambda: self.es.indices.put_index_template(name=name, **body))

    def put_mapping(self, index: str, body: dict) -> None:
        self.call("put mapping", lambda: self.es.indices.put_mapping(index=index, **body))

    def get_mapping(self, index: str) -> dict:
        body = self.call("get mapping", lambda: self.es.indices.get_mapping(index=index).body)
        return next(iter(body.values()), {}).get("mappings", {})

    def index_exists(self, index: str) -> bool:
        return bool(self.call("index exists", lambda: self.es.indices.exists(index=index)))

    def create_index(self, index: str) -> None:
        self.call("create index", lambda: self.es.indices.create(index=index))

    def refresh(self, index: str) -> None:
        self.call("refresh", lambda: self.es.indices.refresh(index=index))

    def put_lifecycle_policy(self, name: str, body: dict) -> None:
        self.call("put ILM policy", lambda: self.es.ilm.put_lifecycle(name=name, policy=body["policy"]))

    def close(self) -> None:
        self.es.close()


class _OpenSearchClient(SiemClient):
    flavor = "opensearch"

    def __init__(self, params: ConnectionParams):
        super().__init__(params)
        from opensearchpy import OpenSearch

        options: dict[str, Any] = {"timeout": params.request_timeout, "max_retries": 0, "retry_on_timeout": False,
                                   "verify_certs": params.verify_certs, "ssl_show_warn": params.verify_certs}
        if params.ca_file:
            options["ca_certs"] = str(params.ca_file)
        if params.username and params.password:
            options["http_auth"] = (params.username, params.password.get_secret_value())
        elif params.api_key or params.bearer_token:
            options["headers"] = params.auth_header()
        self.os = OpenSearch(hosts=params.hosts, **options)

    def _translate(self, what: str, fn: Callable[[], T]) -> T:
        from opensearchpy.exceptions import TransportError

        try:
            return fn()
        except TransportError as exc:
            status = _status_of(exc)
            detail = (describe_error(exc.info) if isinstance(exc.info, dict) else exc.error) if status \
                else (exc.info or exc.error)
            raise ElasticError(f"{what}: " + (f"HTTP {status}: {detail}" if status else str(detail)), status) from None

    def search(self, body: dict, index: str | None = None) -> dict:
        return self.call("search", lambda: self.os.search(index=index, body=body))

    def open_pit(self, index: str, keep_alive: str) -> str:
        return self.call("open point in time",
                         lambda: self.os.create_pit(index=index, params={"keep_alive": keep_alive})["pit_id"])

    def close_pit(self, pit_id: str) -> None:
        self.call("close point in time", lambda: self.os.delete_pit(body={"pit_id": [pit_id]}), retry=False)

    def bulk(self, operations: list[dict]) -> dict:
        return self._translate("bulk", lambda: self.os.bulk(body=operations))

    def _get_source(self, index: str, doc_id: str) -> dict:
        return self.os.get(index=index, id=doc_id)["_source"]

    def put_index_template(self, name: str, body: dict) -> None:
        self.call("put index template", lambda: self.os.indices.put_index_template(name=name, body=body))

    def put_mapping(self, index: str, body: dict) -> None:
        self.call("put mapping", lambda: self.os.indices.put_mapping(index=index, body=body))

    def get_mapping(self, index: str) -> dict:
        body = self.call("get mapping", lambda: self.os.indices.get_mapping(index=index))
        return next(iter(body.values()), {}).get("mappings", {})

    def index_exists(self, index: str) -> bool:
        return bool(self.call("index exists", lambda: self.os.indices.exists(index=index)))

    def create_index(self, index: str) -> None:
        self.call("create index", lambda: self.os.indices.create(index=index))

    def refresh(self, index: str) -> None:
        self.call("refresh", lambda: self.os.indices.refresh(index=index))

    def put_lifecycle_policy(self, name: str, body: dict) -> None:
        raise ElasticError("index lifecycle (ILM) policies are an Elasticsearch feature; on OpenSearch "
                           "manage retention with an ISM policy", 400)

    def close(self) -> None:
        self.os.close()


def load_object(path: str) -> Any:
    """'package.module:Name' -> the object."""
    module, _, name = path.partition(":")
    if not name:
        raise ValueError(f"{path!r}: expected 'module:Name'")
    return getattr(importlib.import_module(module), name)


class UsesCluster:
    """Mixin for components with `ConnectionParams`: a client made on first use, closed by close()."""

    params: ConnectionParams
    _client: SiemClient | None = None

    @property
    def client(self) -> SiemClient:
        if self._client is None:
            self._client = connect(self.params)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def connect(params: ConnectionParams) -> SiemClient:
    flavor = params.flavor
    if flavor == "auto":
        flavor = with_retries(lambda: detect_flavor(params), f"connect to {params.hosts[0]}", params.retry)
        log.info("%s is %s", params.hosts[0], flavor)
    return _OpenSearchClient(params) if flavor == "opensearch" else _ElasticsearchClient(params)
