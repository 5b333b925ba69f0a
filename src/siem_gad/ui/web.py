"""`siem-gad ui`: the built-in web view, a Flask app of server-rendered pages.

Pages: incidents (`/`), alerts with filters and pages (`/alerts`), one alert with its
explanation, evidence and evidence graph (`/alerts/<id>`), one incident (`/incidents/<id>`), an
entity's score timeline (`/entities/<key>`), the jobs' status (`/status`), and the analyst's
verdict buttons (`POST /alerts/<id>/feedback`).

Safety, because event fields are attacker-controlled and the view can change suppression:

- every value is escaped by Jinja's autoescaping (and the SVG drawer escapes its own);
- the Content-Security-Policy forbids scripts altogether (the pages have none), so markup
  that slipped through could still not run;
- verdicts are POSTed with a per-process CSRF token, and the Origin, when sent, must be ours;
- bound to anything but a loopback address the view demands `SIEM_GAD_UI_TOKEN`, given once
  on `/login` (kept in an HttpOnly, SameSite=Strict cookie) or as `Authorization: Bearer`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import fields
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Flask, Response, abort, redirect, render_template, request, url_for

from ..timeutil import isoformat, parse_time
from .stores import PAGE_SIZE, SORTS, VERDICTS, AlertQuery, AlertStore
from .svg import evidence_graph_svg, timeline_svg

log = logging.getLogger(__name__)
COOKIE = "siem_gad_ui"
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; script-src 'none'")
MAX_PAGE = 100_000


class QueryError(ValueError):
    """A filter the user typed that cannot be used; the page says which."""


def parse_query(args: Any) -> AlertQuery:
    values: dict[str, Any] = {}
    for name in ("rule", "detector", "job", "severity", "entity"):
        text = (args.get(name) or "").strip()
        values[name] = text or None
    for name in ("since", "until"):
        text = (args.get(name) or "").strip()
        if text:
            try:
                values[name] = isoformat(parse_time(text))
            except (ValueError, TypeError):
                raise QueryError(f"{name}: {text!r} is not a time (ISO 8601, e.g. 2026-01-05T10:00, or -1d)") from None
    verdict = (args.get("verdict") or "").strip()
    if verdict and verdict not in VERDICTS:
        raise QueryError(f"verdict: {verdict!r} is not one of {', '.join(VERDICTS)}")
    sort = (args.get("sort") or "newest").strip()
    if sort not in SORTS:
        raise QueryError(f"sort: {sort!r} is not one of {', '.join(SORTS)}")
    try:
        page = min(MAX_PAGE, max(1, int(args.get("page") or 1)))
    except ValueError:
        raise QueryError(f"page: {args.get('page')!r} is not a number") from None
    try:
        per_page = min(500, max(5, int(args.get("per_page") or PAGE_SIZE)))
    except ValueError:
        raise QueryError(f"per_page: {args.get('per_page')!r} is not a number") from None
    return AlertQuery(verdict=verdict or None, sort=sort, page=page, per_page=per_page, **values)


def query_args(query: AlertQuery, **changes: Any) -> str:
    """The URL query string of `query` with `changes` (None removes a key)."""
    values = {f.name: getattr(query, f.name) for f in fields(query)}
    values.update(changes)
    defaults = {"page": 1, "per_page": PAGE_SIZE, "sort": "newest"}
    return urlencode({k: v for k, v in values.items() if v not in (None, "") and defaults.get(k) != v})


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")


def create_app(app: Any, store: AlertStore, *, sink_name: str, token: str | None = None) -> Flask:
    """The web app over a siem-gad `App` (state, triage, jobs) and the store of its alerts."""
    web = Flask(__name__, static_folder="static", template_folder="templates")
    web.config.update(TEMPLATES_AUTO_RELOAD=False, MAX_CONTENT_LENGTH=64 * 1024)
    secret = secrets.token_bytes(32)
    token_cookie = hmac.new(secret, (token or "").encode(), hashlib.sha256).hexdigest() if token else None

    def csrf_token() -> str:
        return hmac.new(secret, b"feedback", hashlib.sha256).hexdigest()

    def verdicts() -> dict[str, str]:
        return {a["alert_id"]: v.verdict for v in app.triage.verdicts() for a in v.alerts}

    @web.context_processor
    def helpers() -> dict[str, Any]:
        from ..triage.related import entity_key

        return {"csrf_token": csrf_token, "sink_name": sink_name, "query_args": query_args, "entity_key": entity_key,
                "severity_class": lambda s: f"sev-{s}" if s in ("low", "medium", "high", "critical") else "sev-none"}

    @web.before_request
    def authenticate() -> Response | None:
        if token is None or request.endpoint in ("static", "login", "healthz"):
            return None
        offered = request.headers.get("Authorization", "")
        if offered.startswith("Bearer ") and hmac.compare_digest(offered[7:].encode(), token.encode()):
            return None
        if hmac.compare_digest((request.cookies.get(COOKIE) or "").encode(), (token_cookie or "").encode()):
            return None
        return redirect(url_for("login", next=request.full_path if request.method == "GET" else "/"))

    @web.after_request
    def harden(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @web.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @web.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        if token is None:
            return redirect(url_for("incidents"))
        error = None
        if request.method == "POST":
            if hmac.compare_digest((request.form.get("token") or "").encode(), token.encode()):
                target = request.args.get("next") or "/"
                if not target.startswith("/") or target.startswith("//"):
                    target = "/"
                response = redirect(target)
                response.set_cookie(COOKIE, token_cookie or "", httponly=True, samesite="Strict",
                                    secure=request.is_secure)
                return response
            error = "That token is not the one SIEM_GAD_UI_TOKEN holds."
        return render_template("login.html", error=error), 401 if error else 200

    @web.get("/")
    def incidents() -> str:
        found = store.incidents(limit=200)
        return render_template("incidents.html", incidents=found, verdicts=verdicts())

    @web.get("/alerts")
    def alerts() -> Any:
        try:
            query = parse_query(request.args)
        except QueryError as exc:
            return render_template("alerts.html", page=None, error=str(exc), query=AlertQuery(), verdicts={}), 400
        known = verdicts()
        page = store.alerts(query, known)
        return render_template("alerts.html", page=page, error=None, query=query, verdicts=known)

    @web.get("/alerts/<alert_id>")
    def alert(alert_id: str) -> str:
        document = store.alert(alert_id)
        if document is None:
            abort(404, f"no alert {alert_id} in {sink_name}")
        info = document.get("siem_gad", {})
        given = next((v for v in app.triage.verdicts() if any(a["alert_id"] == alert_id for a in v.alerts)), None)
        weights = [abs(float(c.get("weight") or 0)) for c in info.get("explanation", [])]
        entity = info.get("entity", {})
        from ..triage.related import entity_key

        return render_template(
            "alert.html", alert=document, info=info, verdict=given, top_weight=max(weights, default=0) or 1.0,
            graph=evidence_graph_svg(info.get("graph") or {}), graph_data=info.get("graph") or {},
            entity_key=entity_key(entity.get("field", ""), entity.get("value", "")) if entity else None,
            incident_id=incident_of(alert_id), events=evidence_events(info))

    def evidence_events(info: dict[str, Any]) -> list[list[tuple[str, Any]]] | None:
        """The alert's evidence events from its job's source, flattened, or None where the
        source cannot look them up (or is out of reach: the ids are shown then)."""
        from ..alerts import flatten

        job = info.get("job")
        ids = [str(i) for i in (info.get("evidence") or {}).get("event_ids", [])]
        if job not in app.config.jobs or not ids:
            return None
        try:
            found = app.job(job).source.find_events(ids)
        except Exception as exc:  # noqa: BLE001 - the page still shows the ids
            log.warning("evidence of %s: the source could not be searched: %s", info.get("alert_id"), exc)
            return None
        return None if found is None else [sorted(flatten(doc).items())[:40] for doc in found]

    def incident_of(alert_id: str) -> str | None:
        with app.state.transaction() as db:
            record = app.triage.book(db).alert(alert_id)
        return record.get("incident_id") if record else None

    @web.post("/alerts/<alert_id>/feedback")
    def feedback(alert_id: str) -> Any:
        origin = request.headers.get("Origin")
        if origin and urlsplit(origin).netloc != request.host:
            abort(403, "cross-origin verdicts are refused")
        if not hmac.compare_digest((request.form.get("csrf") or "").encode(), csrf_token().encode()):
            abort(403, "the form is stale or not ours (CSRF token); reload the page")
        from ..triage.feedback import verdict_for

        until_text = (request.form.get("until") or "").strip()
        try:
            until = parse_time(until_text) if until_text else None
            given = verdict_for(alert_id, app.triage.targets(alert_id), request.form.get("verdict", ""),
                                request.form.get("scope") or "entity+rule", until,
                                (request.form.get("note") or "")[:500], by=request.form.get("by") or "siem-gad ui")
        except (ValueError, TypeError) as exc:
            abort(400, str(exc))
        app.triage.record(given)
        return redirect(url_for("alert", alert_id=alert_id, recorded=given.verdict), code=303)

    @web.get("/incidents/<incident_id>")
    def incident(incident_id: str) -> str:
        document = store.incident(incident_id)
        if document is None:
            abort(404, f"no incident {incident_id}")
        members = [store.alert(a) for a in document["siem_gad"]["incident"].get("alert_ids", [])[:200]]
        return render_template("incident.html", incident=document, info=document["siem_gad"]["incident"],
                               members=[m for m in members if m], verdicts=verdicts())

    @web.get("/entities/<path:key>")
    def entity(key: str) -> str:
        from ..triage.scorebook import WINDOW_ENTITY, timeline

        kind, _, value = key.partition(":")
        query = AlertQuery(entity=value or key, per_page=100)
        known = verdicts()
        page = store.alerts(query, known)
        own = [r for r in page.rows if r.entity_value == (value or key)]
        with app.state.transaction() as db:
            points = timeline(db, key, {r.job for r in own})
        series: dict[tuple[str, str, bool], list] = {}
        for point in points:
            series.setdefault((point.job, point.detector, point.entity == WINDOW_ENTITY), []).append(point)
        charts = [{"job": job, "detector": detector, "window": window, "points": len(pts),
                   "alerts": sum(p.alerted for p in pts), "threshold": pts[-1].threshold,
                   "svg": timeline_svg([p.window_start for p in pts], [p.score for p in pts],
                                       [p.threshold for p in pts], [p.alerted for p in pts])}
                  for (job, detector, window), pts in sorted(series.items())]
        return render_template("entity.html", key=key, kind=kind, value=value, charts=charts, rows=own,
                               total=page.total, verdicts=known)

    @web.get("/status")
    def status() -> str:
        report = [app.job(name).status() for name in app.config.jobs]
        return render_template("status.html", report=report, now=isoformat(datetime.now().astimezone()))

    @web.errorhandler(400)
    @web.errorhandler(403)
    @web.errorhandler(404)
    def problem(error: Any) -> tuple[str, int]:
        return render_template("error.html", code=error.code, message=error.description), error.code

    return web
