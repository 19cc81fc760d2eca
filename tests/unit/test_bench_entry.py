"""scripts/bench.py still starts, and the sets the README names exist.

The benchmarks themselves are not run here (they need the whole machine);
this only proves that the entry point and every set module import.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "scripts" / "bench.py"


def _help() -> str:
    proc = subprocess.run([sys.executable, str(BENCH), "--help"], capture_output=True,
                          text=True, cwd=REPO, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_bench_help_lists_every_set() -> None:
    out = " ".join(_help().split())
    sets = re.search(r"sets: ([\w, ]+) \(default: foundation\)", out)
    assert sets is not None, out
    assert sets.group(1).split(", ") == [
        "foundation", "routing", "mesh", "distributed", "qos", "inproc", "signing",
        "frameworks"]


def test_the_sets_the_readme_names_exist() -> None:
    readme = (REPO / "README.md").read_text()
    named = re.search(r"python scripts/bench\.py \[([\w|]+)\]", readme)
    assert named is not None
    out = _help()
    for name in named.group(1).split("|"):
        assert re.search(rf"\b{name}\b", out), name


def test_an_unknown_set_is_refused() -> None:
    proc = subprocess.run([sys.executable, str(BENCH), "nosuch"], capture_output=True,
                          text=True, cwd=REPO, timeout=60, check=False)
    assert proc.returncode == 2
    assert "unknown set(s) nosuch" in proc.stderr


def test_the_instruction_count_script_starts() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_instructions.py"),
                           "--help"], capture_output=True, text=True, cwd=REPO / "scripts",
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "callgrind" in proc.stdout and "--tree" in proc.stdout and "--mesh" in proc.stdout
