"""The configuration file: schema, loading and validation.

Validation happens in two steps. `load_config` checks the structure (pydantic models below)
and cross references (a job's source and sinks exist). `validate_components` then checks the
parameters of each source, graph builder, detector and sink against the `Params` model of the
plugin class that implements it, so plugin parameters get the same precise messages.
Every error names the file, line and key path.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError

from .components import Params
from .plugins import ComponentUnavailable
from .timeutil import parse_duration, parse_time
from .yamlfile import ConfigError, Problem, load_yaml

if TYPE_CHECKING:
    from .plugins import PluginHost

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _valid_time(value: str) -> str:
    parse_time(value)
    return value


# A time as written in the config (ISO 8601, 'now', '-7d'), checked, kept as text: relative
# times are resolved when used.
TimeText = Annotated[str, AfterValidator(_valid_time)]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentSpec(BaseModel):
    """`type:` picks the plugin class; every other key is a parameter of that class."""

    model_config = ConfigDict(extra="allow")
    type: str

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TrainingConfig(Strict):
    windows: int = Field(24, ge=2, description="how many windows of history a model is fitted on")


class DetectorSpec(ComponentSpec):
    training: TrainingConfig = TrainingConfig()


class LoggingConfig(Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class JobConfig(Strict):
    source: Name
    window: Duration = timedelta(hours=1)
    schedule: Duration = timedelta(minutes=5)
    start: TimeText | None = None
    batch_windows: int = Field(24, ge=1)
    alert_training_windows: bool = False
    graph: ComponentSpec
    detectors: dict[Name, DetectorSpec] = Field(min_length=1)
    sinks: list[Name] = Field(default_factory=list)

class KibanaConfig(Params):
    """The `kibana:` section of the config: where `siem-gad kibana import` posts the objects."""

    url: str = Field(..., description="Kibana base URL, e.g. https://kibana.example:5601")
    product: Literal["kibana", "opensearch-dashboards"] = Field(
        "kibana", description="what runs at `url`: the objects and the API header differ")
    space: str | None = Field(None, description="Kibana space id (default space when unset)")
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    verify_certs: bool = True
    sink: str | None = Field(None, description="the elasticsearch sink whose index the data view shows")
    request_timeout: float = 30.0


class IncidentConfig(Strict):
    """The `incidents:` section: how alerts are grouped (see triage/incidents.py)."""

    enabled: bool = True
    horizon: Duration = Field(timedelta(hours=24), description="alerts further apart than this are not linked")
    open_at: float = Field(75.0, ge=0, le=100,
                           description="combined risk at which a group of alerts becomes an open incident (75: the "
                                       "high band, one high alert or two corroborating medium ones); below it the "
                                       "group is kept with status `watch`")
    entity_half_life: Duration = Field(timedelta(hours=24),
                                       description="an alert counts half as much towards its entity's risk after this")
    sinks: list[Name] | None = Field(None, description="where incident documents go; default: every sink")


class HeartbeatConfig(Strict):
    """The `heartbeat:` section: one status document per pass (see triage/heartbeat.py)."""

    enabled: bool = True
    sinks: list[Name] | None = Field(None, description="where status documents go; default: every sink")


class ExecutionConfig(Strict):
    """The `execution:` section: where the work of a pass runs (see execution.py)."""

    engine: Literal["local", "ray"] = Field("local", description="local: this process; ray: tasks on a Ray cluster")
    address: str | None = Field(None, description="Ray cluster to join (ray://host:10001 or auto); "
                                                   "default: start a local Ray with `workers` CPUs")
    workers: int | None = Field(None, ge=1, le=4096, description="CPUs of the local Ray; default: every core")
    shards: int | None = Field(None, ge=1, le=4096, description="actors over which a keyed baseline (rare_links' "
                                                               "link table) is split; default: one per CPU")


class AppConfig(Strict):
    state_dir: Path = Path("state")
    plugins_dir: Path | None = None
    plugins: list[str] = Field(default_factory=list)
    rules_dir: Path = Path("rules")
    logging: LoggingConfig = LoggingConfig()
    threads: Literal["auto"] | Annotated[int, Field(ge=1, le=256)] = Field(
        "auto", description="intra-op threads for torch, BLAS and numba (see threads.py); auto: 1, or OMP_NUM_THREADS")
    sources: dict[Name, ComponentSpec] = Field(min_length=1)
    sinks: dict[Name, ComponentSpec] = Field(min_length=1)
    jobs: dict[Name, JobConfig] = Field(min_length=1)
    kibana: KibanaConfig | None = None
    incidents: IncidentConfig = IncidentConfig()
    heartbeat: HeartbeatConfig = HeartbeatConfig()
    execution: ExecutionConfig = ExecutionConfig()

    # Filled in by load_config, not by the user.
    file: Path = Path("config.yaml")
    document: Any = Field(default=None, exclude=True, repr=False)

    @property
    def base_dir(self) -> Path:
        return self.file.parent

    def resolve(self, path: Path) -> Path:
        """Relative paths in the config are relative to the config file."""
        return path if path.is_absolute() else (self.base_dir / path)

    @property
    def state_path(self) -> Path:
        return self.resolve(self.state_dir)

    @property
    def plugins_path(self) -> Path:
        return self.resolve(self.plugins_dir) if self.plugins_dir else self.base_dir / "plugins"

    @property
    def rules_path(self) -> Path:
        return self.resolve(self.rules_dir)

    def detector_config_hash(self, job_name: str, detector_name: str) -> str:
        """Hash of everything that shapes a trained model: a change makes the model stale."""
        job = self.jobs[job_name]
        payload = {
            "window": job.window.total_seconds(),
            "graph": job.graph.model_dump(),
            "detector": job.detectors[detector_name].model_dump(),
        }
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def load_config(file: str | Path, environ: dict[str, str] | None = None) -> AppConfig:
    """Parse and validate the structure of a config file (no plugins needed)."""
    file = Path(file).resolve()
    doc = load_yaml(file, environ)
    if not isinstance(doc.data, dict):
        raise ConfigError([doc.problem((), "expected a mapping of settings at the top level")])
    data = {k: v for k, v in doc.data.items() if k not in ("file", "document")}
    try:
        config = AppConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(doc.validation_problems(exc)) from None
    config.file = file
    config.document = doc
    problems = []
    for job_name, job in config.jobs.items():
        if job.source not in config.sources:
            problems.append(doc.problem(("jobs", job_name, "source"),
                                        f"no source named {job.source!r} (defined: {', '.join(config.sources)})"))
        for index, sink in enumerate(job.sinks):
            if sink not in config.sinks:
                problems.append(doc.problem(("jobs", job_name, "sinks", index),
                                            f"no sink named {sink!r} (defined: {', '.join(config.sinks)})"))
    for section in ("incidents", "heartbeat"):
        for index, sink in enumerate(getattr(config, section).sinks or []):
            if sink not in config.sinks:
                problems.append(doc.problem((section, "sinks", index),
                                            f"no sink named {sink!r} (defined: {', '.join(config.sinks)})"))
    if config.kibana and config.kibana.sink and config.kibana.sink not in config.sinks:
        problems.append(doc.problem(("kibana", "sink"), f"no sink named {config.kibana.sink!r} "
                                                        f"(defined: {', '.join(config.sinks)})"))
    if problems:
        raise ConfigError(problems)
    return config


def component_params(config: AppConfig, spec: ComponentSpec, cls: type, path: tuple) -> dict[str, Any]:
    """Validate a component's parameters against its class's `Params` model.

    Returns keyword arguments for the class; relative `Path` parameters are resolved against
    the config file's directory. Raises ConfigError with the key path of the bad parameter.
    """
    params_model = getattr(cls, "Params", None)
    raw = spec.params
    if params_model is None:
        return raw
    try:
        validated = params_model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(config.document.validation_problems(exc, path)) from None
    values = {key: getattr(validated, key) for key in type(validated).model_fields}
    return {key: config.resolve(v) if isinstance(v, Path) else v for key, v in values.items()}


def validate_components(config: AppConfig, host: PluginHost) -> list[Problem]:
    """Check every component type exists and its parameters are valid; return the problems."""
    doc = config.document
    problems: list[Problem] = []

    def check(kind: str, spec: ComponentSpec, path: tuple) -> None:
        registry = host.components(kind)
        if spec.type not in registry:
            known = ", ".join(sorted(registry)) or "none loaded"
            problems.append(doc.problem(path + ("type",), f"unknown {kind[:-1].replace('_', ' ')} type {spec.type!r} (available: {known})"))
            return
        try:
            component_params(config, spec, registry[spec.type].cls, path)
        except ConfigError as exc:
            problems.extend(exc.problems)
        except ComponentUnavailable as exc:
            problems.append(doc.problem(path + ("type",), str(exc)))

    for name, spec in config.sources.items():
        check("sources", spec, ("sources", name))
    for name, spec in config.sinks.items():
        check("sinks", spec, ("sinks", name))
    for job_name, job in config.jobs.items():
        check("graph_builders", job.graph, ("jobs", job_name, "graph"))
        for det_name, det in job.detectors.items():
            check("detectors", det, ("jobs", job_name, "detectors", det_name))
    if config.execution.engine == "ray" and importlib.util.find_spec("ray") is None:
        problems.append(doc.problem(("execution", "engine"), "engine 'ray' needs Ray, which is not installed: "
                                    "pip install 'siem-gad[ray]'"))
    unwritable = unwritable_reason(config.state_path)
    if unwritable:
        problems.append(doc.problem(("state_dir",), unwritable))
    return problems


def unwritable_reason(directory: Path) -> str | None:
    """Why siem-gad could not keep its state in `directory`, or None when it can. Tried for
    real (a temporary file in the directory, or in its first existing parent): permission bits
    alone say nothing for root or on a read-only file system."""
    import tempfile

    probe = Path(directory)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        return f"{directory} cannot be created: {probe} is not a directory"
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        return f"{directory} is not writable: {exc.strerror or exc} ({probe})"
    return None
