"""Jobs a person can see (issue 13), driven as a user does: the CLI in a
subprocess against real brokers and workers on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import LocalNode, MeshOfNodes, free_base_port, local_node, make_home, wait_for

pytestmark = pytest.mark.integration


def cli(node: LocalNode, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-P", "-m", "operone_zmq", *args], env=node.env,
                          capture_output=True, text=True, timeout=timeout)


def jobs_of(node: LocalNode, *args: str) -> list[dict[str, object]]:
    r = cli(node, "jobs", "--json", *args)
    assert r.returncode == 0, r.stderr
    found: list[dict[str, object]] = json.loads(r.stdout)
    return found


@pytest.fixture
def line(tmp_path: Path) -> Iterator[MeshOfNodes]:
    """a -- b -- c, one worker on c: a's jobs run two hops away."""
    m = MeshOfNodes(tmp_path, ["a", "b", "c"])
    try:
        m.start([("a", "b"), ("b", "c")])
        m["c"].start_worker()
        m.wait_converged()
        with m["a"].client() as c:
            wait_for(lambda: any("sleep" in n["tools"] for n in c.topology()["nodes"]
                                 if n["id"] == "c"), 30, "c's tools to reach a", step=0.1)
        yield m
    finally:
        m.stop()


def test_jobs_job_and_cancel_across_two_hops(line: MeshOfNodes) -> None:
    a, c = line["a"], line["c"]
    r = cli(a, "run", "--detach", "sleep", "--arg", "seconds=60")
    assert r.returncode == 0, r.stderr
    jid = r.stdout.strip()
    assert jid and f"job {jid} " in r.stderr and "Traceback" not in r.stderr
    # The origin lists it where it runs; the node running it names the origin.
    (mine,) = [j for j in jobs_of(a) if j["id"] == jid]
    assert (mine["tool"], mine["node"], mine["state"], mine["attempts"]) == (
        "sleep", "c", "running", 1)
    there = wait_for(lambda: [j for j in jobs_of(c) if j["id"] == jid], 20, "c to list it")
    assert (there[0]["submitter"], there[0]["state"]) == ("a", "running")
    assert jobs_of(a, "--node", "b") == []
    table = cli(a, "jobs")
    assert table.stdout.splitlines()[0].split()[:4] == ["ID", "TOOL", "NODE", "STATE"]
    assert jid in table.stdout
    detail = cli(a, "job", jid)
    assert detail.returncode == 0 and "running" in detail.stdout and "on c" in detail.stdout
    # From the node that runs it: refused with the reason, not silently.
    r = cli(c, "cancel", jid)
    assert r.returncode == 1 and "only the broker it was submitted to" in r.stderr
    # From another terminal on the origin: cancelled where it runs.
    r = cli(a, "cancel", jid)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"cancelled job {jid} on c"
    (done,) = [j for j in jobs_of(a, "--state", "cancelled") if j["id"] == jid]
    assert done["error"]["code"] == "cancelled"  # type: ignore[index]
    wait_for(lambda: [j for j in jobs_of(c, "--state", "cancelled") if j["id"] == jid], 20,
             "c to stop it")
    again = cli(a, "cancel", jid)
    assert again.returncode == 1 and "already finished (cancelled)" in again.stderr
    unknown = cli(a, "job", "no-such-job")
    assert unknown.returncode == 1 and "no job 'no-such-job'" in unknown.stderr


def test_ctrl_c_on_run_cancels_the_job_and_says_where(line: MeshOfNodes) -> None:
    a, c = line["a"], line["c"]
    p = subprocess.Popen([sys.executable, "-P", "-m", "operone_zmq", "run", "sleep", "--arg",
                          "seconds=60"], env=a.env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stderr is not None
        first = p.stderr.readline()  # "job J", printed at once
        assert first.startswith("job "), first
        jid = first.split()[1]
        wait_for(lambda: [j for j in jobs_of(c) if j["id"] == jid], 20, "the job to start")
        p.send_signal(signal.SIGINT)
        _out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    assert p.returncode == 130, err
    assert f"cancelled job {jid} on c" in err and "Traceback" not in err
    wait_for(lambda: [j for j in jobs_of(c, "--state", "cancelled") if j["id"] == jid], 20,
             "c to stop it")


def test_timeout_is_one_deadline_and_map_sums_up_failures(line: MeshOfNodes) -> None:
    a = line["a"]
    r = cli(a, "run", "sleep", "--arg", "seconds=5", "--timeout", "1", "--retries", "2")
    assert r.returncode == 2
    jid = r.stderr.splitlines()[0].split()[1]
    assert "timeout" in r.stderr and "within 1 s" in r.stderr
    info = json.loads(cli(a, "job", jid, "--json").stdout)
    assert (info["state"], info["attempts"], info["error"]["code"]) == ("failed", 1, "timeout")
    args = line["a"].dir / "args.jsonl"
    args.write_text('{"seconds": 0}\n{"seconds": -1}\n{"seconds": 0}\n{"nope": 1}\n')
    r = cli(a, "map", "sleep", "--args-file", str(args))
    assert r.returncode == 2
    summary = r.stderr.strip().splitlines()[-1]
    assert summary.startswith("error: 2 of 4 jobs failed: "), r.stderr
    assert "4/4" in r.stderr  # done/total in the progress line
    assert len(r.stdout.splitlines()) == 4


def test_validation_before_sending(tmp_path: Path) -> None:
    node = LocalNode(tmp_path, "v")
    for args in (["run", "echo", "--timeout", "-1"], ["run", "echo", "--retries", "-1"],
                 ["map", "echo", "--args-file", "-", "--concurrency", "0"],
                 ["run", "--detach", "--raw", "shell", "--", "true"],
                 ["run", "echo", "--arg", "x={bad"], ["qos", "p", "--allocate", "-1"],
                 ["qos", "p", "--allocate", "5GB/s"], ["init", "--host", "10.0.0.1:7700"],
                 ["init", "--host", "no such host"]):
        r = cli(node, *args)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr
    typo = {**node.env, "OPERONE_WORKERS_CONT": "3"}
    r = subprocess.run([sys.executable, "-P", "-m", "operone_zmq", "keys", "list"], env=typo,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert "warning: unknown variable OPERONE_WORKERS_CONT (no option workers.cont" in r.stderr


def test_a_command_against_a_node_that_is_not_running_fails_at_once(tmp_path: Path) -> None:
    home = make_home(tmp_path / "down", "down", free_base_port())
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-P", "-m", "operone_zmq", "--home", str(home.path),
                        "stats"], capture_output=True, text=True, timeout=60)
    took = time.monotonic() - start
    assert r.returncode == 3, r.stderr
    assert "no broker is running at 127.0.0.1:" in r.stderr and "operone node start" in r.stderr
    assert took < 10, took  # it used to wait out the 10 s query timeout


def test_python_futures_expose_the_job_id_and_cancel_with_job_cancelled(
        tmp_path: Path) -> None:
    from operone_zmq import ClientJobFuture, JobCancelled

    with local_node(tmp_path, "py") as node:
        node.start_broker()
        node.start_worker()
        node.wait_workers(1)
        with node.client() as c:
            fut = c.submit("sleep", {"seconds": 60}, timeout=90)
            assert isinstance(fut, ClientJobFuture) and fut.job_id
            wait_for(lambda: c.query("job", {"id": fut.job_id})["state"] == "running", 20,
                     "the job to run")
            assert fut.cancel() is True
            with pytest.raises(JobCancelled):
                fut.result(10)
            wait_for(lambda: c.query("job", {"id": fut.job_id})["state"] == "cancelled", 20,
                     "the broker to cancel it")
            done = c.submit("echo", {"x": 1})
            assert done.result(30).job_id == done.job_id
            assert done.cancel() is False


def test_cp_to_an_unreachable_node_fails_like_run(line: MeshOfNodes, tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * 1000)
    r = cli(line["a"], "cp", str(src), "nowhere:f.bin", timeout=20)  # it took 52 s
    assert r.returncode == 2 and "no_route" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_async_futures_cancelled_directly_or_by_a_timeout_cancel_the_job(
        tmp_path: Path) -> None:
    """An AsyncClient job's future cancelled by its caller, or by the task
    awaiting it (asyncio.wait_for's timeout), sends CANCEL: the broker shows
    the job cancelled and its worker slot comes back."""
    import asyncio

    from operone_zmq import AsyncClient

    async def go(node: LocalNode) -> list[str]:
        async with AsyncClient("127.0.0.1", node.base_port, keys=node.keys()) as c:
            direct = c.submit("sleep", {"seconds": 60}, timeout=90)
            awaited = c.submit("sleep", {"seconds": 60}, timeout=90)
            deadline = time.monotonic() + 20
            while (await c.query("stats"))["running"] < 2:
                assert time.monotonic() < deadline, "the jobs did not start"
                await asyncio.sleep(0.05)
            assert direct.cancel() is True
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(awaited, 0.2)
            assert awaited.cancelled()
            states: list[str] = []
            for jid in (direct.job_id, awaited.job_id):
                while (state := (await c.query("job", {"id": jid}))["state"]) != "cancelled":
                    assert time.monotonic() < deadline + 20, (jid, state)
                    await asyncio.sleep(0.05)
                states.append(state)
            assert (await c.run("echo", {"x": 1})) == {"x": 1}
            return states

    with local_node(tmp_path, "pya") as node:
        node.start_broker()
        node.start_worker()
        node.wait_workers(1)
        assert asyncio.run(go(node)) == ["cancelled", "cancelled"]
