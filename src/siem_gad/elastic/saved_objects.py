"""Saved-object bundles checked the way Kibana and OpenSearch Dashboards check them on import.

Neither server can run here, so `validate_bundle` does what their import does before anything
is written, and more that they only find when a panel is opened:

- each object against a JSON Schema of its type (`SCHEMAS`): required attributes, no unknown
  attribute or root field (the servers' type schemas refuse them), the product's own fields
  (`coreMigrationVersion` and the data view `name` exist in Kibana, not in OpenSearch
  Dashboards);
- the JSON strings nested in attributes (`visState`, `panelsJSON`, `searchSourceJSON` ...)
  parsed, with the shape the server reads from them;
- every reference resolving to an object of the bundle, and every `indexRefName` /
  `panelRefName` naming a reference of its object;
- `migrationVersion` set for every object, and no newer than the oldest server supported
  (`PRODUCTS`): a server refuses an object from a newer version than itself;
- every field a visualisation aggregates on, and every column and sort of a saved search,
  mapped in the index template behind the object's data view, with a type the aggregation
  accepts (`field_types` gives {data view id: {field: type}}).

`validate_bundle` returns the problems, each naming the object and the place; none means the
bundle is accepted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

PRODUCTS: dict[str, dict[str, Any]] = {
    # `oldest`: the migration level of the oldest supported server (Kibana 7.10; OpenSearch
    # Dashboards 1.x and 2.x, which forked at 7.10.2). An object at a newer level is refused
    # by that server, so none may exceed it; newer servers migrate the objects forward.
    # `xsrf`: the header each product's API demands.
    "kibana": {"oldest": "7.10.0", "xsrf": "kbn-xsrf"},
    "opensearch-dashboards": {"oldest": "7.10.2", "xsrf": "osd-xsrf"},
}
# The migration version each type's objects are written in (Kibana 7.10's latest per type,
# which both products migrate forward from).
MIGRATION_VERSIONS = {"index-pattern": "7.6.0", "visualization": "7.10.0", "search": "7.9.3", "dashboard": "7.9.3"}

AGGREGATABLE = {"keyword", "ip", "long", "integer", "short", "byte", "float", "double", "half_float", "scaled_float",
                "date", "boolean"}
NUMERIC = {"long", "integer", "short", "byte", "float", "double", "half_float", "scaled_float"}
AGG_FIELD_TYPES = {"date_histogram": {"date"}, "histogram": NUMERIC, "max": NUMERIC | {"date"},
                   "min": NUMERIC | {"date"}, "avg": NUMERIC, "sum": NUMERIC, "terms": AGGREGATABLE,
                   "cardinality": AGGREGATABLE, "significant_terms": AGGREGATABLE}

_STRING = {"type": "string"}
_JSON_STRING = {"type": "string", "minLength": 2}
_META = {"type": "object", "additionalProperties": False, "required": ["searchSourceJSON"],
         "properties": {"searchSourceJSON": _JSON_STRING}}
_ATTRIBUTES: dict[str, dict[str, Any]] = {
    "index-pattern": {"required": ["title"], "properties": {
        "title": {"type": "string", "minLength": 1}, "timeFieldName": _STRING, "fields": _JSON_STRING,
        "fieldFormatMap": _JSON_STRING, "sourceFilters": _JSON_STRING, "name": _STRING}},
    "visualization": {"required": ["title", "visState", "kibanaSavedObjectMeta"], "properties": {
        "title": {"type": "string", "minLength": 1}, "description": _STRING, "version": {"type": "integer"},
        "uiStateJSON": _JSON_STRING, "visState": _JSON_STRING, "kibanaSavedObjectMeta": _META,
        "savedSearchRefName": _STRING}},
    "search": {"required": ["title", "columns", "kibanaSavedObjectMeta"], "properties": {
        "title": {"type": "string", "minLength": 1}, "description": _STRING, "version": {"type": "integer"},
        "hits": {"type": "integer"}, "columns": {"type": "array", "items": _STRING},
        "sort": {"type": "array", "items": {"type": "array", "prefixItems": [_STRING, {"enum": ["asc", "desc"]}],
                                            "minItems": 2, "maxItems": 2}},
        "kibanaSavedObjectMeta": _META}},
    "dashboard": {"required": ["title", "panelsJSON", "kibanaSavedObjectMeta"], "properties": {
        "title": {"type": "string", "minLength": 1}, "description": _STRING, "version": {"type": "integer"},
        "hits": {"type": "integer"}, "timeRestore": {"type": "boolean"}, "timeFrom": _STRING, "timeTo": _STRING,
        "refreshInterval": {"type": "object"}, "optionsJSON": _JSON_STRING, "panelsJSON": _JSON_STRING,
        "kibanaSavedObjectMeta": _META}},
}
# Root and attribute fields one product has and the other refuses.
PRODUCT_ONLY = {"kibana": {"root": {"coreMigrationVersion", "typeMigrationVersion", "managed"},
                           "attributes": {"index-pattern": {"name"}}},
                "opensearch-dashboards": {"root": set(), "attributes": {}}}
_VERSION = {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"}


def schema(kind: str, product: str) -> dict[str, Any]:
    """The JSON Schema of a saved object of type `kind` as `product` imports it."""
    attributes = json.loads(json.dumps(_ATTRIBUTES[kind]))
    other = next(p for p in PRODUCTS if p != product)
    foreign_attributes = PRODUCT_ONLY[other]["attributes"].get(kind, set()) - \
        PRODUCT_ONLY[product]["attributes"].get(kind, set())
    for name in foreign_attributes:
        attributes["properties"].pop(name, None)
    root = {"id": {"type": "string", "minLength": 1, "pattern": r"^[A-Za-z0-9_\-:.]+$"}, "type": {"const": kind},
            "attributes": {"type": "object", "additionalProperties": False, **attributes},
            "references": {"type": "array", "items": {
                "type": "object", "additionalProperties": False, "required": ["name", "type", "id"],
                "properties": {"name": _STRING, "type": {"enum": sorted(_ATTRIBUTES)}, "id": _STRING}}},
            "migrationVersion": {"type": "object", "additionalProperties": False, "required": [kind],
                                 "properties": {kind: _VERSION}},
            "version": _STRING, "updated_at": _STRING, "namespaces": {"type": "array"}}
    if product == "kibana":
        root.update(coreMigrationVersion=_VERSION, typeMigrationVersion=_VERSION, managed={"type": "boolean"})
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
            "additionalProperties": False, "required": ["id", "type", "attributes", "references", "migrationVersion"],
            "properties": root}


SCHEMAS = {product: {kind: schema(kind, product) for kind in _ATTRIBUTES} for product in PRODUCTS}


@dataclass(frozen=True)
class Problem:
    object: str  # "type/id"
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.object}: {self.where}: {self.message}"


def text_or_none(value: Any) -> str | None:
    """`value` if it is a string, else None: what can be looked up (a list cannot)."""
    return value if isinstance(value, str) else None


def listed(value: Any) -> list:
    return value if isinstance(value, list) else []


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def validate_bundle(objects: list[dict[str, Any]], product: str = "kibana",
                    field_types: dict[str, dict[str, str]] | None = None) -> list[Problem]:
    """Every problem the product's import (and opening the panels) would find; see the module."""
    from jsonschema import Draft202012Validator

    if product not in PRODUCTS:
        raise ValueError(f"product must be one of {', '.join(PRODUCTS)}, not {product!r}")
    problems: list[Problem] = []
    present = {(o["type"], o["id"]) for o in objects
               if isinstance(o, dict) and isinstance(o.get("type"), str) and isinstance(o.get("id"), str)}
    limits = PRODUCTS[product]
    for number, obj in enumerate(objects, 1):
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str) or obj["type"] not in _ATTRIBUTES:
            kind = obj.get("type") if isinstance(obj, dict) else type(obj).__name__
            problems.append(Problem(f"object {number}", "type", f"unsupported saved-object type {kind!r}"))
            continue
        name = f"{obj['type']}/{obj.get('id')}"
        validator = Draft202012Validator(SCHEMAS[product][obj["type"]])
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
            where = ".".join(str(p) for p in error.absolute_path) or "(object)"
            problems.append(Problem(name, where, error.message))
        version = obj.get("migrationVersion", {}).get(obj["type"]) if isinstance(obj.get("migrationVersion"), dict) else None
        if isinstance(version, str) and version.count(".") == 2 and version.replace(".", "").isdigit():
            if version_tuple(version) > version_tuple(limits["oldest"]):
                problems.append(Problem(name, f"migrationVersion.{obj['type']}",
                                        f"{version} is newer than {product} {limits['oldest']} (the oldest "
                                        f"supported) accepts"))
        references = obj.get("references") if isinstance(obj.get("references"), list) else []
        for position, ref in enumerate(references):
            if isinstance(ref, dict) and (text_or_none(ref.get("type")), text_or_none(ref.get("id"))) not in present:
                problems.append(Problem(name, f"references.{position}",
                                        f"{ref.get('type')}/{ref.get('id')} is not in the bundle (dangling reference)"))
        if isinstance(obj.get("attributes"), dict):
            problems += _nested(name, obj, {text_or_none(r.get("name")) for r in references if isinstance(r, dict)})
            if field_types is not None:
                problems += _fields(name, obj, references, field_types)
    return problems


def _parse(name: str, where: str, text: Any, expected: type) -> tuple[Any, list[Problem]]:
    if not isinstance(text, str):
        return None, []  # the schema reported it
    try:
        value = json.loads(text)
    except ValueError as exc:
        return None, [Problem(name, where, f"not valid JSON: {exc}")]
    if not isinstance(value, expected):
        return None, [Problem(name, where, f"must hold a JSON {expected.__name__}, not {type(value).__name__}")]
    return value, []


def _nested(name: str, obj: dict[str, Any], reference_names: set) -> list[Problem]:
    attributes, problems = obj["attributes"], []
    meta = attributes.get("kibanaSavedObjectMeta")
    if isinstance(meta, dict):
        source, found = _parse(name, "attributes.kibanaSavedObjectMeta.searchSourceJSON", meta.get("searchSourceJSON"), dict)
        problems += found
        if source and "indexRefName" in source and text_or_none(source["indexRefName"]) not in reference_names:
            problems.append(Problem(name, "attributes.kibanaSavedObjectMeta.searchSourceJSON.indexRefName",
                                    f"{source['indexRefName']!r} names no reference of this object"))
        if source and not isinstance(source.get("query", {}), dict):
            problems.append(Problem(name, "attributes.kibanaSavedObjectMeta.searchSourceJSON.query", "must be an object"))
    for key in ("uiStateJSON", "optionsJSON", "fieldFormatMap"):
        if key in attributes:
            problems += _parse(name, f"attributes.{key}", attributes[key], dict)[1]
    if obj["type"] == "visualization":
        state, found = _parse(name, "attributes.visState", attributes.get("visState"), dict)
        problems += found
        if state is not None:
            for key, kind in (("type", str), ("params", dict), ("aggs", list)):
                if not isinstance(state.get(key), kind):
                    problems.append(Problem(name, f"attributes.visState.{key}", f"must be a {kind.__name__}"))
            for position, agg in enumerate(listed(state.get("aggs"))):
                if not isinstance(agg, dict) or not {"id", "type", "schema"} <= set(agg):
                    problems.append(Problem(name, f"attributes.visState.aggs.{position}", "needs id, type and schema"))
    if obj["type"] == "dashboard":
        panels, found = _parse(name, "attributes.panelsJSON", attributes.get("panelsJSON"), list)
        problems += found
        for position, panel in enumerate(panels or []):
            where = f"attributes.panelsJSON.{position}"
            if not isinstance(panel, dict) or not isinstance(panel.get("gridData"), dict):
                problems.append(Problem(name, where, "needs gridData"))
                continue
            if text_or_none(panel.get("panelRefName")) not in reference_names:
                problems.append(Problem(name, f"{where}.panelRefName",
                                        f"{panel.get('panelRefName')!r} names no reference of this object"))
            grid = panel["gridData"]
            if not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")) or grid.get("x", 0) + grid.get("w", 0) > 48:
                problems.append(Problem(name, f"{where}.gridData", "x, y, w, h must be integers within 48 columns"))
    return problems


def _fields(name: str, obj: dict[str, Any], references: list, field_types: dict[str, dict[str, str]]) -> list[Problem]:
    """The fields the object reads, checked against its data view's mapping."""
    if obj["type"] == "index-pattern":
        view, uses = text_or_none(obj.get("id")), [("attributes.timeFieldName", obj["attributes"].get("timeFieldName"),
                                                    {"date"})]
    else:
        view = next((text_or_none(r.get("id")) for r in references
                     if isinstance(r, dict) and r.get("type") == "index-pattern"), None)
        uses = []
        attributes = obj["attributes"]
        if obj["type"] == "visualization":
            state = _parse(name, "", attributes.get("visState"), dict)[0] or {}
            for position, agg in enumerate(listed(state.get("aggs"))):
                if isinstance(agg, dict) and isinstance(agg.get("params"), dict) and "field" in agg["params"]:
                    uses.append((f"attributes.visState.aggs.{position}.params.field", agg["params"]["field"],
                                 AGG_FIELD_TYPES.get(text_or_none(agg.get("type")), AGGREGATABLE)))
        if obj["type"] == "search":
            uses += [(f"attributes.columns.{i}", c, None) for i, c in enumerate(listed(attributes.get("columns")))]
            uses += [(f"attributes.sort.{i}", s[0], AGGREGATABLE) for i, s in enumerate(listed(attributes.get("sort")))
                     if isinstance(s, list) and s]
    if view is None or not uses:
        return []
    if view not in field_types:
        return [Problem(name, "references", f"data view {view!r} has no index template to check fields against")]
    types, problems = field_types[view], []
    for where, field_name, allowed in uses:
        if field_name is None:
            continue
        if not isinstance(field_name, str):
            problems.append(Problem(name, where, f"a field name must be a string, not {type(field_name).__name__}"))
        elif field_name not in types:
            problems.append(Problem(name, where, f"{field_name!r} is not mapped in the index behind {view!r}"))
        elif allowed is not None and types[field_name] not in allowed:
            problems.append(Problem(name, where, f"{field_name!r} is mapped {types[field_name]}; this needs one of "
                                                 f"{', '.join(sorted(allowed))}"))
    return problems
