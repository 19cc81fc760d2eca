"""The dashboard's HTTP server (aiohttp): the page, its data and /metrics.

Routes (all GET unless said)::

    /                  the page (static/index.html); the app is static/app.js
    /static/...        the page's assets, all shipped in the package
    /api/snapshot      the current snapshot (JSON, see model.DashboardState)
    /api/events        server-sent events: one ``snapshot`` event per change
    /api/jobs          QUERY jobs with ?state=&node=&limit= (501 if unsupported)
    /api/job/{id}      QUERY job {id}
    POST /api/cancel   {"job": ID}: QUERY cancel (an operator action)
    /metrics           Prometheus exposition (prometheus_client)

Access: a dashboard bound to a loopback address answers anyone on this
machine, like the broker's own CLI does (the broker is reached with the
node's keys either way); it refuses requests whose Host header is not a
loopback name, so a web page elsewhere cannot reach it by DNS rebinding.
Bound anywhere else, or with ``require_token``, every request must carry the
access token printed at start: ``?token=`` (the page then keeps it in a
cookie), the ``operone_dashboard_token`` cookie, or ``Authorization: Bearer``
(for Prometheus).  Missing: 401; wrong: 403; compared in constant time.
State-changing requests (POST) must also carry the ``X-Operone-Dashboard``
header, which a cross-site form cannot set.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..errors import JobError, OperoneError
from .metrics import BrokerCollector
from .model import JOB_STATES, MAX_JOBS
from .poller import Poller, TooManySubscribers

__all__ = ["COOKIE", "KEEPALIVE", "Dashboard", "is_loopback", "make_app", "static_dir"]

#: Name of the cookie that keeps the access token once the page has it.
COOKIE = "operone_dashboard_token"

#: Header a POST must carry (a cross-site form or image cannot set one).
CSRF_HEADER = "X-Operone-Dashboard"

#: Seconds between keep-alive comments on an idle event stream (proxies close
#: streams that say nothing for a minute or so).
KEEPALIVE = 15.0

#: Longest job id or filter value accepted from the page (ids are at most 64
#: characters on the wire; node names are shorter).
MAX_ARG_LEN = 128

#: Largest request body accepted (a cancel request is a few dozen bytes).
MAX_BODY = 4096

#: Sent with every response: the page loads nothing from elsewhere, may not
#: be framed (its Cancel button must not be clickjacked), leaks no token in a
#: Referer, and its files are taken for what their Content-Type says.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:;"
                               " frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def static_dir() -> Path:
    """The directory of the page's assets, inside the installed package."""
    return Path(str(resources.files("operone_zmq.dashboard") / "static"))


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves only this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The host of a Host header value, without its port."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def _arg(request: web.Request, name: str) -> str | None:
    v = request.query.get(name)
    if v is None or v == "":
        return None
    if len(v) > MAX_ARG_LEN:
        raise web.HTTPBadRequest(text=f"{name} is longer than {MAX_ARG_LEN} characters")
    return v


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


def _error(exc: OperoneError, status: int = 502) -> web.Response:
    code = exc.code if isinstance(exc, JobError) else type(exc).__name__
    return _json({"error": str(exc), "code": code}, status)


def make_app(poller: Poller, *, token: str | None) -> web.Application:
    """The dashboard application over ``poller``; ``token``: the access
    token every request must carry, or None (loopback only)."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        given_cookie = False
        if token is not None:
            given = request.query.get("token")
            if given is None:
                given = request.cookies.get(COOKIE)
                given_cookie = given is not None
            if given is None:
                auth = request.headers.get("Authorization", "")
                if auth.startswith("Bearer "):
                    given = auth[7:]
            if not given:
                raise web.HTTPUnauthorized(
                    text="this dashboard needs its access token: open the URL it printed at"
                         " start (…/?token=…)")
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise web.HTTPForbidden(text="wrong access token")
        elif not is_loopback(_host_name(request.headers.get("Host", ""))):
            raise web.HTTPForbidden(
                text="this dashboard serves loopback names only (127.0.0.1, localhost)")
        if request.method not in ("GET", "HEAD") and request.headers.get(CSRF_HEADER) != "1":
            raise web.HTTPForbidden(text=f"a state-changing request needs {CSRF_HEADER}: 1")
        resp = await handler(request)
        if token is not None and not given_cookie and request.path == "/":
            resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
        return resp

    async def index(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(static_dir() / "index.html",
                                headers={"Cache-Control": "no-store"})

    async def snapshot(request: web.Request) -> web.Response:
        return _json(poller.snapshot())

    async def events(request: web.Request) -> web.StreamResponse:
        try:
            q = poller.subscribe()
        except TooManySubscribers as exc:
            raise web.HTTPServiceUnavailable(text=str(exc)) from exc
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
        try:
            await resp.prepare(request)
            await resp.write(b"retry: 2000\n\n")
            while True:
                try:
                    body = await asyncio.wait_for(q.get(), KEEPALIVE)
                except TimeoutError:
                    await resp.write(b": keep-alive\n\n")
                    continue
                await resp.write(f"event: snapshot\ndata: {body}\n\n".encode())
        except ConnectionResetError:
            pass  # the page went away
        finally:
            poller.unsubscribe(q)
        return resp

    async def jobs(request: web.Request) -> web.Response:
        args: dict[str, Any] = {}
        state, node, limit = _arg(request, "state"), _arg(request, "node"), _arg(request, "limit")
        if state is not None:
            if state not in JOB_STATES:
                raise web.HTTPBadRequest(text=f"state must be one of {', '.join(JOB_STATES)}")
            args["state"] = state
        if node is not None:
            args["node"] = node
        if limit is not None:
            if not limit.isdigit() or not 1 <= int(limit) <= MAX_JOBS:
                raise web.HTTPBadRequest(text=f"limit must be 1..{MAX_JOBS}")
            args["limit"] = int(limit)
        try:
            got = await poller.jobs(args)
        except OperoneError as exc:
            return _error(exc)
        if got is None:
            return _json({"supported": False,
                          "error": "this broker does not report jobs yet"}, 501)
        return _json({"supported": True, "jobs": got})

    async def job(request: web.Request) -> web.Response:
        jid = request.match_info["id"]
        if len(jid) > MAX_ARG_LEN:
            raise web.HTTPBadRequest(text="job id too long")
        if poller.jobs_unknown:
            return _json({"supported": False,
                          "error": "this broker does not report jobs yet"}, 501)
        try:
            got = await poller.query("job", {"id": jid})
        except JobError as exc:
            if exc.code == "bad_request" and "unknown query" in exc.message:
                return _json({"supported": False,
                              "error": "this broker does not report jobs yet"}, 501)
            return _error(exc)
        except OperoneError as exc:
            return _error(exc)
        if not isinstance(got, dict) or got.get("state") is None:
            return _json({"error": f"no job '{jid}' on this broker"}, 404)
        return _json({"supported": True, "job": got})

    async def cancel(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise web.HTTPBadRequest(text="the body must be JSON: {\"job\": ID}") from exc
        jid = body.get("job") if isinstance(body, dict) else None
        if not isinstance(jid, str) or not jid or len(jid) > MAX_ARG_LEN:
            raise web.HTTPBadRequest(text="the body must be JSON: {\"job\": ID}")
        try:
            got = await poller.query("cancel", {"job": jid,
                                                "reason": "cancelled from the dashboard"})
        except OperoneError as exc:
            return _error(exc)
        cancelled = bool(got.get("cancelled")) if isinstance(got, dict) else False
        return _json({"job": jid, "cancelled": cancelled})

    registry = CollectorRegistry(auto_describe=False)

    def source() -> Any:
        st = poller.state
        return (st.answers, st.up, st.durations if st.answers.jobs_supported else None)

    registry.register(BrokerCollector(source))

    async def metrics(request: web.Request) -> web.Response:
        resp = web.Response(body=generate_latest(registry))
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    async def headers(request: web.Request, resp: web.StreamResponse) -> None:
        resp.headers.update(SECURITY_HEADERS)

    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    app.on_response_prepare.append(headers)
    app.router.add_get("/", index)
    app.router.add_static("/static/", static_dir(), follow_symlinks=False)
    app.router.add_get("/api/snapshot", snapshot)
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/jobs", jobs)
    app.router.add_get("/api/job/{id}", job)
    app.router.add_post("/api/cancel", cancel)
    app.router.add_get("/metrics", metrics)

    async def on_shutdown(app: web.Application) -> None:
        with contextlib.suppress(Exception):
            await poller.stop()

    app.on_shutdown.append(on_shutdown)
    return app


#: Seconds open connections (event streams) get to finish when the dashboard
#: stops; a page reconnects by itself, so there is no point waiting long.
SHUTDOWN_TIMEOUT = 1.0


class Dashboard:
    """The poller and the HTTP server, started and stopped together."""

    def __init__(self, poller: Poller, host: str, port: int, *, token: str | None) -> None:
        self.poller = poller
        self.host = host
        self.port = port
        self.token = token
        self._runner: web.AppRunner | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        runner = web.AppRunner(make_app(self.poller, token=self.token), access_log=None,
                               shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        if runner.addresses:  # the bound port, when 0 was asked for
            self.port = int(runner.addresses[0][1])
        await self.poller.start()

    @property
    def base_url(self) -> str:
        """``http://host:port/`` (a wildcard bind shown as this machine's loopback)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    @property
    def url(self) -> str:
        """The page's URL, with the access token when one is required."""
        return self.base_url + (f"?token={self.token}" if self.token else "")

    async def wait(self) -> None:
        await self._stopped.wait()

    async def stop(self) -> None:
        await self.poller.stop()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        self._stopped.set()
