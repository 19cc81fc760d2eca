"""``operone dashboard`` against real brokers: HTTP rules, /metrics, and the page
in a real browser (Debian's chromium, headless, driven by Selenium).

Every dashboard here is the real CLI in a subprocess (``--port 0``, a ready
file), an ordinary CurveZMQ client of a real broker.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import FAST_ENV, LocalNode, MeshOfNodes, Proc, pure_build_only, wait_for
from prometheus_client.parser import text_string_to_metric_families

from operone_zmq.errors import JobCancelled

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


class Dash:
    """A running ``operone dashboard`` process."""

    def __init__(self, node: LocalNode, tmp: Path, *args: str) -> None:
        ready = tmp / f"dash-{node.node_id}-{time.monotonic_ns()}.json"
        argv = [sys.executable, "-P", "-m", "operone_zmq", "--home", str(node.dir), "dashboard",
                "--port", "0", "--interval", "0.3", "--ready-file", str(ready), *args]
        self.proc = Proc(argv, node.env, ready.with_suffix(".log"))
        try:
            wait_for(lambda: ready.exists() or not self.proc.alive(), 20,
                     "the dashboard to start")
        except BaseException:
            self.proc.stop()
            raise
        if not self.proc.alive():
            self.proc.stop()
            raise RuntimeError(f"dashboard exited:\n{self.proc.output()}")
        info = json.loads(ready.read_text())
        self.url: str = info["url"]
        self.port: int = info["port"]
        self.token: str | None = info["token"]
        self.base = f"http://127.0.0.1:{self.port}/"

    def get(self, path: str, *, token: bool = True, headers: dict[str, str] | None = None,
            data: bytes | None = None) -> tuple[int, bytes, Any]:
        """(status, body, headers) of a request, the token added as ?token= when asked."""
        url = self.base + path
        if token and self.token:
            url += ("&" if "?" in url else "?") + "token=" + self.token
        req = urllib.request.Request(url, data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            body = e.read()
            e.close()
            return e.code, body, e.headers

    def snapshot(self) -> dict[str, Any]:
        status, body, _ = self.get("api/snapshot")
        assert status == 200, body
        s: dict[str, Any] = json.loads(body)
        return s

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, body, headers = self.get("metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in text_string_to_metric_families(body.decode()) for s in fam.samples}

    def stop(self) -> None:
        self.proc.stop()


@pytest.fixture
def lone(tmp_path: Path) -> Iterator[LocalNode]:
    """A node home (keys, config); its broker is not started."""
    n = LocalNode(tmp_path, "a")
    try:
        yield n
    finally:
        n.stop()


def test_token_rules_unknown_routes_and_bad_input(lone: LocalNode, tmp_path: Path) -> None:
    """--require-token: missing token 401, wrong 403, ?token= then the cookie, Bearer
    for Prometheus; unknown routes 404; POST without the CSRF header 403; bad filters 400."""
    d = Dash(lone, tmp_path, "--require-token")
    try:
        assert d.token and f"?token={d.token}" in d.url
        assert "access token required (--require-token)" in d.proc.output()
        assert d.get("", token=False)[0] == 401
        assert d.get("metrics", token=False)[0] == 401
        assert d.get("?token=nope", token=False)[0] == 403
        assert d.get("api/snapshot", token=False,
                     headers={"Cookie": "operone_dashboard_token=x"})[0] == 403
        status, body, headers = d.get("")
        assert status == 200 and b"operone dashboard" in body
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        cookie = headers["Set-Cookie"]
        assert cookie.startswith(f"operone_dashboard_token={d.token}")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert d.get("api/snapshot", token=False,
                     headers={"Cookie": f"operone_dashboard_token={d.token}"})[0] == 200
        assert d.get("metrics", token=False,
                     headers={"Authorization": f"Bearer {d.token}"})[0] == 200
        assert d.get("static/app.js")[0] == 200
        assert d.get("nowhere")[0] == 404
        assert d.get("static/../../config.py")[0] in (403, 404)
        assert d.get("api/jobs?state=bogus")[0] == 400
        assert d.get("api/jobs?limit=0")[0] == 400
        assert d.get("api/jobs?node=" + "x" * 500)[0] == 400
        post = b'{"job": "j1"}'
        ctype = {"Content-Type": "application/json"}
        assert d.get("api/cancel", data=post, headers=ctype)[0] == 403  # no CSRF header
        assert d.get("api/cancel", data=b"{not json",
                     headers={**ctype, "X-Operone-Dashboard": "1"})[0] == 400
        assert d.get("api/cancel", data=b'{"job": 5}',
                     headers={**ctype, "X-Operone-Dashboard": "1"})[0] == 400
        # No broker is running: the API says so instead of failing.
        snap = wait_for(lambda: (s := d.snapshot())["broker"]["error"] != "not polled yet"
                        and s, 20, "a failed poll")
        assert snap["broker"]["up"] is False and "no answer" in snap["broker"]["error"]
        m = d.metrics()
        assert m == {("operone_up", (("node", ""),)): 0}
        status, body, _ = d.get("api/cancel", data=post,
                                headers={**ctype, "X-Operone-Dashboard": "1"})
        assert status == 502 and json.loads(body)["code"] == "BrokerUnreachable"
    finally:
        d.stop()


def test_a_wildcard_bind_requires_the_token_and_loopback_checks_host(
        lone: LocalNode, tmp_path: Path) -> None:
    """--host 0.0.0.0 forces a token (and says why); a loopback dashboard refuses
    a foreign Host header (DNS rebinding)."""
    d = Dash(lone, tmp_path, "--host", "0.0.0.0")
    try:
        assert d.token
        assert "access token required (0.0.0.0 is not a loopback address)" in d.proc.output()
        assert d.get("", token=False)[0] == 401
        assert d.get("")[0] == 200
    finally:
        d.stop()
    d = Dash(lone, tmp_path)
    try:
        assert d.token is None and d.url == d.base
        assert "access token" not in d.proc.output()
        assert d.get("")[0] == 200
        assert d.get("", headers={"Host": f"localhost:{d.port}"})[0] == 200
        assert d.get("", headers={"Host": f"evil.example:{d.port}"})[0] == 403
        # The port is taken: a second dashboard says so, no traceback.
        import subprocess

        r = subprocess.run([sys.executable, "-P", "-m", "operone_zmq", "--home", str(lone.dir),
                            "dashboard", "--port", str(d.port)], env=lone.env,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and f"cannot serve on 127.0.0.1:{d.port}" in r.stderr
        assert "Traceback" not in r.stderr
        # An open event stream: the first event is a snapshot, and SIGTERM still
        # stops the dashboard at once and cleanly.
        with urllib.request.urlopen(d.base + "api/events", timeout=10) as stream:
            assert stream.headers["Content-Type"] == "text/event-stream"
            lines = [stream.readline() for _ in range(4)]
            assert b"event: snapshot\n" in lines, lines
            t0 = time.monotonic()
            assert d.proc.stop() == 0
            assert time.monotonic() - t0 < 4
    finally:
        d.stop()


def test_without_the_extra_it_says_how_to_install(lone: LocalNode, tmp_path: Path) -> None:
    """aiohttp missing (hidden by a module that fails to import): one line, exit 1."""
    fake = tmp_path / "noaiohttp"
    (fake / "aiohttp").mkdir(parents=True)
    (fake / "aiohttp" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'aiohttp'\", name='aiohttp')\n")
    import subprocess

    r = subprocess.run([sys.executable, "-P", "-m", "operone_zmq", "--home", str(lone.dir),
                        "dashboard"], env={**lone.env, "PYTHONPATH": str(fake)},
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "pip install 'operone-zmq[dashboard]'" in r.stderr and "aiohttp" in r.stderr
    assert "Traceback" not in r.stderr


def test_metrics_move_as_jobs_run(tmp_path: Path) -> None:
    """/metrics parsed with prometheus_client.parser: jobs counted as they finish,
    link gauges in seconds, and the broker going away shows as operone_up 0."""
    m = MeshOfNodes(tmp_path, ["a", "b"])
    try:
        m.start([("a", "b")])
        m["a"].start_worker()
        m.wait_converged()
        d = Dash(m["a"], tmp_path)
        try:
            done = ("operone_jobs_total", (("node", "a"), ("state", "done")))
            wait_for(lambda: done in d.metrics(), 20, "a first scrape")
            before = d.metrics()
            with m["a"].client() as c:
                assert c.map("echo", [{"i": i} for i in range(5)]) == [{"i": i}
                                                                       for i in range(5)]
            after = wait_for(lambda: (x := d.metrics()).get(done, 0) >= before[done] + 5
                             and x, 20, "operone_jobs_total to move")
            assert after[done] == before[done] + 5
            assert after[("operone_jobs_received_total", (("node", "a"),))] >= 5
            assert after[("operone_workers", (("node", "a"),))] == 1
            rtt = after[("operone_link_rtt_seconds", (("node", "a"), ("peer", "b")))]
            assert 0 < rtt < 1  # seconds, not milliseconds
            assert after[("operone_link_up", (("node", "a"), ("peer", "b")))] == 1
            assert after[("operone_lsas_received_total", (("node", "a"),))] > 0
            # This broker has no QUERY jobs: asked once a minute, not once a poll
            # (each unknown query counts as a bad_request error of the broker).  A
            # first ask that timed out under load is asked again: at most 2.
            wait_for(lambda: d.snapshot()["broker"]["polls"] >= 10, 20, "ten polls")
            bad = ("operone_job_errors_total", (("code", "bad_request"), ("node", "a")))
            assert d.metrics().get(bad, 0) <= 2, d.metrics().get(bad)
            m["a"].stop()
            wait_for(lambda: d.metrics().get(("operone_up", (("node", "a"),))) == 0, 20,
                     "operone_up 0")
        finally:
            d.stop()
    finally:
        m.stop()


# ---------------------------------------------------------------- browser
def _browser(tmp: Path) -> Any:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER});"
                    " scripts/test.sh installs them as root")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (test extra)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1200,900",
                 f"--user-data-dir={tmp / 'chromium-profile'}"):
        opts.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp / "chromedriver.log"))
    drv = webdriver.Chrome(options=opts, service=service)
    drv.set_page_load_timeout(20)
    drv.set_script_timeout(20)
    return drv


def _until(drv: Any, shots: Path, js: str, what: str, timeout: float = 20) -> None:
    """Wait until the JavaScript expression ``js`` is truthy in the page."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(drv, timeout, poll_frequency=0.1).until(
            lambda dr: dr.execute_script(f"return !!({js})"))
    except TimeoutException:
        drv.save_screenshot(str(shots / "timeout.png"))
        raise AssertionError(f"the page did not show {what} within {timeout} s:\n"
                             f"{drv.find_element(By.TAG_NAME, 'body').text}") from None


def _show(drv: Any, shots: Path, page: str) -> None:
    drv.execute_script(f"location.hash = '#{page}'")
    _until(drv, shots, f"!document.getElementById('page-{page}').hidden", f"the {page} page")


@pytest.mark.slow
def test_the_page_in_a_real_browser(tmp_path: Path) -> None:
    """Two linked nodes and the dashboard of a: both nodes and the link appear; a slow
    job cancelled from the page; b killed and marked down without a reload; a's broker
    gone (the page says so) and back (it recovers).  A screenshot of each page."""
    from selenium.webdriver.common.by import By

    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"screenshots: {shots}")
    m = MeshOfNodes(tmp_path, ["a", "b"])
    drv = None
    d = None
    try:
        m.start([("a", "b")])
        m["b"].start_worker()
        m.wait_converged()
        d = Dash(m["a"], tmp_path)
        drv = _browser(tmp_path)

        def until(js: str, what: str, timeout: float = 20) -> None:
            _until(drv, shots, js, what, timeout)

        def show(page: str) -> None:
            _show(drv, shots, page)

        drv.get(d.url)
        until("document.querySelector('g.node[data-node=\"a\"].local[data-state=\"up\"]')"
              " && document.querySelector('g.node[data-node=\"b\"][data-state=\"up\"]')",
              "nodes a (local) and b up")
        until("document.querySelector('g.edge[data-edge=\"a--b\"][data-state=\"up\"]')",
              "the link a--b up")
        # Read in one script: the graph may be redrawn between a find and a read.
        edge_label = drv.execute_script(
            "return document.querySelector('g.edge[data-edge=\"a--b\"] text').textContent")
        assert edge_label.endswith(" ms"), edge_label
        drv.execute_script("window.__operoneMarker = 1")  # gone if the page reloads
        drv.save_screenshot(str(shots / "mesh.png"))

        show("nodes")
        until("document.querySelector('#nodes-table tr[data-node=\"b\"]')", "node b's row")
        row_b = drv.execute_script(
            "return document.querySelector('#nodes-table tr[data-node=\"b\"]').innerText")
        assert "sleep" in row_b and "up" in row_b and "broker" in row_b, row_b
        drv.save_screenshot(str(shots / "nodes.png"))

        show("links")
        until("document.querySelectorAll('#links-table tr[data-peer=\"b\"] polyline').length"
              " >= 2", "link b with its history charts")
        # One script again: the table is redrawn on every refresh (a found
        # row went stale before its text was read, in a full run on a busy machine).
        row = drv.execute_script(
            "return document.querySelector('#links-table tr[data-peer=\"b\"]').innerText")
        cells = row.split("\t")
        # state, then health (0-100: below 100 when heartbeats came late on
        # a busy machine, as in one full run: 96 with 4.2 % loss).
        assert cells[1] == "up" and 0 <= int(cells[7]) <= 100, row
        drv.save_screenshot(str(shots / "links.png"))

        show("jobs")
        with m["a"].client() as c:
            fut = c.submit("sleep", {"seconds": 60}, on="b", timeout=90)
            jid = c.aclient.core.prefix + "1"  # the client's first request
            wait_for(lambda: c.stats()["origin_jobs_in_progress"] == 1, 10, "the job to start")
            supported = d.snapshot()["jobs_supported"]
            if supported:
                until(f"document.querySelector('button.cancel[data-job=\"{jid}\"]')",
                      "the job's cancel button")
                # One script: the table is redrawn every poll, so a found element
                # may be stale by the time a separate click reaches it.
                drv.execute_script(
                    f"document.querySelector('button.cancel[data-job=\"{jid}\"]').click()")
            else:
                until("!document.getElementById('jobs-unsupported').hidden",
                      "'this broker does not report jobs yet'")
                box = drv.find_element(By.ID, "cancel-id")
                box.send_keys(jid)
                drv.find_element(By.ID, "cancel-btn").click()
            until(f"document.getElementById('cancel-result').dataset.result === 'cancelled'"
                  f" && document.getElementById('cancel-result').dataset.job === '{jid}'",
                  "the job cancelled")
            with pytest.raises(JobCancelled):
                fut.result(10)
            drv.save_screenshot(str(shots / "jobs.png"))
        if not supported:
            # The same id again: nothing left to cancel, and the page says so.
            drv.find_element(By.ID, "cancel-btn").click()
            until("document.getElementById('cancel-result').dataset.result === 'not-found'",
                  "'not cancelled' for a finished job")

        show("mesh")
        updates = int(drv.execute_script("return Number(document.body.dataset.updates)"))
        m["b"].stop()
        until("document.querySelector('g.node[data-node=\"b\"][data-state=\"down\"]')"
              " && document.querySelector('g.edge[data-edge=\"a--b\"][data-state=\"down\"]')",
              "b and its link marked down")
        assert drv.execute_script("return window.__operoneMarker") == 1, "the page reloaded"
        assert int(drv.execute_script("return Number(document.body.dataset.updates)")) > updates
        drv.save_screenshot(str(shots / "mesh-b-down.png"))

        m["a"].stop()
        until("!document.getElementById('banner').hidden && document.getElementById("
              "'banner').textContent.includes('does not answer')", "the broker-down banner")
        drv.save_screenshot(str(shots / "broker-down.png"))
        m["a"].start_broker()
        until("document.getElementById('banner').hidden"
              " && document.body.dataset.brokerUp === '1'", "the page recovering")
        assert drv.execute_script("return window.__operoneMarker") == 1, "the page reloaded"
        drv.save_screenshot(str(shots / "broker-back.png"))
        for name in ("mesh", "nodes", "links", "jobs", "broker-down"):
            assert (shots / f"{name}.png").stat().st_size > 1000
        logs = [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"
                and "api/" not in e.get("message", "")]
        assert not logs, logs
    finally:
        if drv is not None:
            drv.quit()
        if d is not None:
            d.stop()
        m.stop()


@pytest.mark.slow
@pure_build_only  # (it feeds the page job records by replacing Queries.answer)
def test_the_jobs_page_against_the_contract(tmp_path: Path) -> None:
    """A real broker whose QUERY jobs/job answer as docs/dashboard.md says (until
    issue 13 builds them, this test answers them on the broker's loop): the table,
    its state filter, a job's detail, the per-row cancel button on a real running
    job, and the duration histogram in /metrics."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from operone_zmq.aio.runtime import broker_from_config
    from operone_zmq.config import load_config

    shots = tmp_path / "screenshots"
    shots.mkdir()
    node = LocalNode(tmp_path, "a")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    # The same heartbeats as the worker process (FAST_ENV), or each side would
    # take the other for dead.
    b = broker_from_config(node.home, load_config(node.home, {
        "workers.heartbeat_interval": float(FAST_ENV["OPERONE_WORKERS_HEARTBEAT_INTERVAL"]),
        "workers.heartbeat_liveness": int(FAST_ENV["OPERONE_WORKERS_HEARTBEAT_LIVENESS"]),
        "broker.heartbeat_interval": float(FAST_ENV["OPERONE_BROKER_HEARTBEAT_INTERVAL"])}))
    drv = d = None
    try:
        asyncio.run_coroutine_threadsafe(b.start(), loop).result(20)
        node.start_worker()
        node.wait_workers(1)
        with node.client() as c:
            fut = c.submit("sleep", {"seconds": 60}, timeout=90)
            jid = c.aclient.core.prefix + "1"  # the client's first request
            wait_for(lambda: c.stats()["origin_jobs_in_progress"] == 1, 10, "the job to start")
            now = time.time()
            jobs = [
                {"id": jid, "tool": "sleep", "node": "a", "state": "running", "attempts": 1,
                 "started": now, "finished": None, "duration": None, "submitter": "t",
                 "error": None},
                {"id": "old-1", "tool": "echo", "node": "b", "state": "done", "attempts": 1,
                 "started": now - 9, "finished": now - 8.5, "duration": 0.5,
                 "submitter": "t", "error": None},
                {"id": "old-2", "tool": "shell", "node": "a", "state": "failed",
                 "attempts": 2, "started": now - 30, "finished": now - 20, "duration": 10.0,
                 "submitter": "t", "error": {"code": "timeout", "message": "too slow"}},
            ]
            real = b.core._queries.answer

            def answer(q: Any, t: float, **kw: Any) -> Any:
                if q.what == "jobs":
                    return [j for j in jobs if q.args.get("state") in (None, j["state"])
                            and q.args.get("node") in (None, j["node"])]
                if q.what == "job":
                    return next((j for j in jobs if j["id"] == q.args.get("id")),
                                {"id": q.args.get("id"), "state": None})
                return real(q, t, **kw)

            b.core._queries.answer = answer  # type: ignore[method-assign]
            d = Dash(node, tmp_path)
            drv = _browser(tmp_path)
            drv.get(d.url + "#jobs")
            _until(drv, shots, "document.querySelectorAll('#jobs-table tbody tr').length === 3",
                   "three jobs")
            assert drv.find_element(By.ID, "jobs-unsupported").is_displayed() is False
            Select(drv.find_element(By.ID, "filter-state")).select_by_visible_text("failed")
            _until(drv, shots, "document.querySelectorAll('#jobs-table tbody tr').length === 1"
                   " && document.querySelector('#jobs-table tr[data-job=\"old-2\"]')",
                   "only the failed job")
            assert "failed (timeout)" in drv.find_element(
                By.CSS_SELECTOR, '#jobs-table tr[data-job="old-2"]').text
            drv.find_element(By.CSS_SELECTOR, '#jobs-table tr[data-job="old-2"]').click()
            _until(drv, shots, "document.getElementById('job-detail').textContent"
                   ".includes('too slow')", "the job's detail")
            Select(drv.find_element(By.ID, "filter-state")).select_by_visible_text("any")
            _until(drv, shots, f"document.querySelector('button.cancel[data-job=\"{jid}\"]')",
                   "the running job's cancel button")
            drv.save_screenshot(str(shots / "jobs.png"))
            drv.find_element(By.CSS_SELECTOR, f'button.cancel[data-job="{jid}"]').click()
            _until(drv, shots, "document.getElementById('cancel-result').dataset.result"
                   " === 'cancelled'", "the job cancelled")
            with pytest.raises(JobCancelled):
                fut.result(10)
        assert d.get(f"api/job/{jid}")[0] == 200 and d.get("api/job/nope")[0] == 404
        hist = ("operone_job_duration_seconds_count", (("node", "a"),))
        wait_for(lambda: d.metrics().get(hist) == 2, 10, "two durations in the histogram")
    finally:
        if drv is not None:
            drv.quit()
        if d is not None:
            d.stop()
        node.stop()
        asyncio.run_coroutine_threadsafe(b.stop(), loop).result(20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
