"""The harness every benchmark set shares: drive, meter, tabulate.

* drivers: :func:`run_window` (N requests, a window in flight, refilled from
  the futures' done-callbacks) and :func:`run_latency` (sequential round
  trips), the same code for a baseline and for operone;
* meters: CPU time of our processes and of the whole machine from /proc
  (:func:`cpu_seconds`, :func:`machine_busy_seconds`, :class:`LoadMeter`),
  so a busy machine is named in the notes;
* the table: a :class:`Result` of :class:`Row` s (baseline, operone, ratio,
  noise, target) and :func:`render`; notes on load and on what child
  processes printed (:func:`load_note`, :func:`log_notes`).

Child processes and meshes of real nodes are in ``scripts/_benchlib.py``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _benchlib import BenchMesh

#: Seconds one measurement may take before the benchmark gives up on it.
PHASE_TIMEOUT = 120.0
#: Cores used by other processes during a measurement past which the run is
#: flagged as noisy (the machine has 2; the benchmark itself needs both).
NOISY_LOAD = 0.15
#: The entry point: the raw baseline's processes are its hidden sub-commands.
SCRIPT = Path(__file__).resolve().parents[1] / "bench.py"

Submit = Callable[[], "asyncio.Future[Any]"]


# =====================================================================
# Process CPU time (Linux /proc; optional)
# =====================================================================


def cpu_seconds(pid: int) -> float | None:
    """CPU time used so far by every thread of ``pid`` (schedstat: ns resolution),
    or None where /proc is not available."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    if total:
        return total / 1e9
    try:  # no schedstat (kernel option): utime + stime in clock ticks
        with open(f"/proc/{pid}/stat") as f:
            fields_ = f.read().rsplit(")", 1)[1].split()
        return (int(fields_[11]) + int(fields_[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def machine_busy_seconds() -> float | None:
    """CPU time every process on the machine has used so far (all cores), from
    /proc/stat; with :func:`cpu_seconds` of our own processes it tells how
    busy the machine was with other work while we measured."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal ...: busy = all but idle, iowait
    busy = sum(v[:8]) - v[3] - v[4]
    return busy / os.sysconf("SC_CLK_TCK")


class LoadMeter:
    """CPU used by our processes and by everything else on the machine meanwhile."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.cpu0 = {k: cpu_seconds(v) for k, v in pids.items()}
        self.busy0 = machine_busy_seconds()
        self.t0 = time.perf_counter()

    def done(self, n: int) -> dict[str, float]:
        """CPU per job of all our processes (us), and other load (cores)."""
        elapsed = time.perf_counter() - self.t0
        busy1 = machine_busy_seconds()
        ours = 0.0
        known = True
        for k, pid in self.pids.items():
            c0, c1 = self.cpu0[k], cpu_seconds(pid)
            if c0 is None or c1 is None:
                known = False
                continue
            ours += c1 - c0
        out: dict[str, float] = {}
        if known and n:
            out["cpu_us_per_job"] = ours / n * 1e6
        if self.busy0 is not None and busy1 is not None and elapsed > 0:
            out["other_load_cores"] = max(0.0, (busy1 - self.busy0 - ours) / elapsed)
        return out


# =====================================================================
# Drivers: the same code for both stacks
# =====================================================================


async def run_window(submit: Submit, n: int, window: int) -> tuple[float, int]:
    """Run ``n`` requests with ``window`` in flight, refilled from the futures'
    done-callbacks.  Returns (seconds, errors)."""
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    sent = completed = errors = 0

    def on_done(f: asyncio.Future[Any]) -> None:
        nonlocal completed, errors
        completed += 1
        if f.cancelled() or f.exception() is not None:
            errors += 1
        if finished.done():
            return
        if sent < n:
            try:
                one()
            except Exception as exc:  # submit() refused: end the phase with it
                finished.set_exception(exc)
        elif completed == n:
            finished.set_result(None)

    def one() -> None:
        nonlocal sent
        sent += 1
        submit().add_done_callback(on_done)

    t0 = time.perf_counter()
    for _ in range(min(window, n)):
        one()
    await asyncio.wait_for(finished, PHASE_TIMEOUT)
    return time.perf_counter() - t0, errors


async def run_window_interleaved(subs: list[Submit], n: int, window: int,
                                 turn: int) -> list[tuple[float, int]]:
    """``n`` requests on each of ``subs`` with ``window`` in flight, in turns
    of ``turn`` requests on each in turn (the order rotated every round):
    each one's (seconds, errors), summed over its turns.  Run one after
    another in blocks, two stacks' throughputs meet a shared host at
    different moments (on a 2-core VM a block of 64 KiB jobs moved by a
    third from one to the next); in turns, every stack sees the same
    moments.  Each turn starts with an empty window and ends drained, which
    every stack pays alike (``turn`` of ten windows or more keeps it small)."""
    secs = [0.0] * len(subs)
    errs = [0] * len(subs)
    done = [0] * len(subs)
    order = list(range(len(subs)))
    r = 0
    while min(done) < n:
        k = r % len(order)
        for i in order[k:] + order[:k]:
            m = min(turn, n - done[i])
            if m > 0:
                t, e = await run_window(subs[i], m, window)
                secs[i] += t
                errs[i] += e
                done[i] += m
        r += 1
    return list(zip(secs, errs, strict=True))


async def run_latency(submit: Submit, n: int) -> list[float]:
    """``n`` sequential round trips; each one's latency in microseconds."""
    out: list[float] = []
    clock = time.perf_counter_ns
    deadline = time.monotonic() + PHASE_TIMEOUT
    for _ in range(n):
        t0 = clock()
        await submit()
        out.append((clock() - t0) / 1000)
        if time.monotonic() > deadline:
            raise TimeoutError("latency phase took too long")
    return out


async def run_latency_interleaved(subs: list[Submit], n: int,
                                  turn: int = 1) -> list[list[float]]:
    """``n`` round trips on each of ``subs``, in rounds of ``turn`` on each in
    turn (the order rotated every round): each one's latencies in
    microseconds.  Run one after another in blocks, two stacks meet a
    shared, busy host at different moments, and a difference of two p50s (a
    hop's cost) moves by more than it measures; interleaved, every stack
    sees the same moments.

    ``turn`` 1: every job meets the caches the other stacks used (cold).
    ``turn`` > 1: the first job of each turn is run and not counted, so
    every counted job went the way the one before it went (warm)."""
    out: list[list[float]] = [[] for _ in subs]
    clock = time.perf_counter_ns
    deadline = time.monotonic() + PHASE_TIMEOUT
    order = list(range(len(subs)))
    counted = turn - 1 if turn > 1 else 1
    for r in range(max(1, n // counted)):
        k = r % len(order)
        for i in order[k:] + order[:k]:
            if turn > 1:
                await subs[i]()
            for _ in range(counted):
                t0 = clock()
                await subs[i]()
                out[i].append((clock() - t0) / 1000)
        if time.monotonic() > deadline:
            raise TimeoutError("latency phase took too long")
    return out


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


# =====================================================================
# Results and their table
# =====================================================================


@dataclass
class Row:
    """One line of the table: a metric for both stacks and its target."""

    metric: str
    unit: str
    baseline: float | None
    operone: float | None
    target: str = ""
    ok: bool | None = None
    higher_is_better: bool = True
    #: Half the range of the repetitions, relative to the median (noise).
    spread: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline and self.operone is not None:
            return self.operone / self.baseline
        return None


#: What the noise column means, unless a set says otherwise.
NOISE_NOTE = ("noise: half the range of the repetitions, relative to the median"
              " (the worse of the two stacks)")


@dataclass
class Result:
    name: str
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: Headings of the two figure columns and of their ratio.
    columns: tuple[str, str, str] = ("baseline", "operone", "operone/base")
    noise_note: str = NOISE_NOTE


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def half_range(*series: list[float]) -> float | None:
    """Half the range of each series relative to its median; the worst of them."""
    worst: float | None = None
    for xs in series:
        if len(xs) > 1 and statistics.median(xs):
            sp = (max(xs) - min(xs)) / 2 / abs(statistics.median(xs))
            worst = sp if worst is None else max(worst, sp)
    return worst


def load_note(res: Result, loads: list[float]) -> None:
    if loads:
        res.data["other_load_cores"] = {"median": statistics.median(loads), "max": max(loads)}
        if statistics.median(loads) > NOISY_LOAD:
            res.notes.append(
                f"the machine was busy with other work: {statistics.median(loads):.2f} cores"
                f" on average (max {max(loads):.2f}) besides the benchmark's processes;"
                " absolute figures are low and noisy")


def log_notes(res: Result, mesh: BenchMesh | None, extra: dict[str, list[str]] | None = None,
               prefix: str = "") -> None:
    """Notes on what child processes printed (at warning level): while they ran
    (worth a look), and while the mesh was being stopped (brokers stopping one
    after another see each other go: partition warnings are expected there)."""
    running = dict(extra or {})
    stopping: dict[str, list[str]] = {}
    if mesh is not None:
        before = mesh.running_logs
        for proc, lines in mesh.logs().items():
            n = len(before.get(proc, []))
            if n:
                running[proc] = lines[:n]
            if lines[n:]:
                stopping[proc] = lines[n:]
    for proc, lines in running.items():
        res.notes.append(f"{prefix}the {proc} printed {len(lines)} lines while running;"
                         f" the first: {lines[0][:200]}")
        res.data.setdefault("child_output", {})[prefix + proc] = lines[-200:]
    if stopping:
        kinds = sorted({_log_event(x) for lines in stopping.values() for x in lines})
        res.notes.append(f"{prefix}while the mesh was stopped, {len(stopping)} processes printed"
                         f" {sum(map(len, stopping.values()))} lines ({', '.join(kinds)})")
        for proc, lines in stopping.items():
            res.data.setdefault("child_output_at_stop", {})[prefix + proc] = lines[-50:]


def _log_event(line: str) -> str:
    """The event name of a structlog console line (``... [warning  ] event  k=v``)."""
    _, sep, rest = line.partition("] ")
    return (rest.split() or ["?"])[0] if sep else line[:40]


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit in ("", "yes/no"):
        return "yes" if v else "no"
    if unit == "x":
        return f"{v:.2f}x"
    if unit in ("ms", "s") and abs(v) < 10:
        return f"{v:,.2f} {unit}"
    if unit in ("us", "ms", "s", "jobs/s", "msgs") and abs(v) < 100:
        return f"{v:,.1f} {unit}"
    return f"{v:,.0f} {unit}"


def render(res: Result) -> str:
    head = ("metric", *res.columns, "noise", "target", "")
    lines = [head]
    for r in res.rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        noise = "" if r.spread is None else f"±{r.spread * 100:.0f}%"
        status = "" if r.ok is None else ("ok" if r.ok else "MISS")
        lines.append((r.metric, _fmt(r.baseline, r.unit), _fmt(r.operone, r.unit), ratio,
                      noise, r.target, status))
    widths = [max(len(x[i]) for x in lines) for i in range(len(head))]
    out = [f"== {res.name}"]
    for j, x in enumerate(lines):
        cells = [x[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(x[1:5], widths[1:5],
                                                                         strict=True)]
        cells += [x[5].ljust(widths[5]), x[6]]
        out.append("  ".join(cells).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths[:6]))
    out.append(res.noise_note)
    out.extend(f"note: {n}" for n in res.notes)
    return "\n".join(out)
