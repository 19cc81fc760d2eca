"""The optional compiled build (mypyc; README "Install"): what is compiled is
what was asked for, an editable install never compiles, and ``--version``
says which build runs.

The tox env ``compiled`` builds the wheel with ``OPERONE_ZMQ_COMPILE=1`` and
runs the tests against it with ``OPERONE_TEST_EXPECT_COMPILED=1``: there the
modules must be compiled, or the run tests pure Python by mistake.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

import operone_zmq
from operone_zmq.cli import cli
from operone_zmq.config import unknown_env_vars

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(operone_zmq.__file__).parent


def _backend() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "operone_build", ROOT / "build_backend" / "operone_build.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _compiled_set() -> list[str]:
    """The modules setup.py's COMPILED names, from the installed package's files."""
    text = (ROOT / "setup.py").read_text()
    block = re.search(r"^COMPILED = \[(.*?)^\]", text, re.M | re.S)
    assert block is not None
    names: set[str] = set()
    for entry in re.findall(r'"operone_zmq/([^"]*)"', block.group(1)):
        paths = sorted((PACKAGE / entry).glob("*.py")) if entry.endswith("/") else [
            PACKAGE / entry]
        for p in paths:
            rel = p.relative_to(PACKAGE).with_suffix("").parts
            names.add(".".join(["operone_zmq", *(rel[:-1] if rel[-1] == "__init__" else rel)]))
    return sorted(names)


@pytest.mark.skipif(os.environ.get("OPERONE_TEST_EXPECT_COMPILED") != "1",
                    reason="runs where the compiled build is tested (tox env compiled)")
def test_the_compiled_build_compiles_what_setup_py_names() -> None:
    compiled = operone_zmq.compiled_modules()
    assert compiled == _compiled_set()
    # ... and they are what is imported (an extension is taken before a .py).
    from operone_zmq.core import broker
    from operone_zmq.protocol import codec
    from operone_zmq.qos import bucket
    from operone_zmq.routing import dijkstra
    for mod in (broker, codec, dijkstra, bucket, sys.modules["operone_zmq.errors"]):
        assert not mod.__file__ or not mod.__file__.endswith(".py"), mod.__file__


def test_a_source_tree_has_no_compiled_module() -> None:
    """Imported from the source tree (an editable install, a checkout), the
    package is pure Python: a stale extension module beside a .py would be
    imported instead of every later edit of it."""
    if os.environ.get("OPERONE_TEST_EXPECT_COMPILED") == "1" or PACKAGE.parent != ROOT:
        pytest.skip("the package is an installed build, not the source tree")
    assert operone_zmq.compiled_modules() == []


def test_version_says_which_build_runs() -> None:
    out = CliRunner().invoke(cli, ["--version"])
    assert out.exit_code == 0, out.output
    n = len(operone_zmq.compiled_modules())
    build = f"compiled: {n} modules" if n else "pure Python"
    assert out.output == f"operone, version {operone_zmq.__version__} ({build})\n"


def test_the_daemons_the_tests_start_run_this_build() -> None:
    """The tests start daemons as ``python -P -m operone_zmq`` from the
    checkout: without ``-P`` they would import its source, and the compiled
    env would test pure-Python daemons."""
    r = subprocess.run([sys.executable, "-P", "-m", "operone_zmq", "--version"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, check=True)
    out = CliRunner().invoke(cli, ["--version"])
    assert r.stdout == out.output


def test_an_editable_build_with_the_flag_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    backend = _backend()
    monkeypatch.setenv("OPERONE_ZMQ_COMPILE", "1")
    for hook in (backend.get_requires_for_build_editable, backend.build_editable,
                 backend.prepare_metadata_for_build_editable):
        with pytest.raises(SystemExit):
            hook("/nonexistent")
        assert "an editable install is always pure Python" in capsys.readouterr().err


def test_the_build_variable_is_not_an_unknown_one_to_the_cli() -> None:
    assert unknown_env_vars({"OPERONE_ZMQ_COMPILE": "1"}) == []


def test_the_flag_is_read_strictly(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = _backend()
    for value, expected in (("", False), ("0", False), ("1", True), ("true", True)):
        monkeypatch.setenv("OPERONE_ZMQ_COMPILE", value)
        assert backend.compile_requested() is expected
    monkeypatch.setenv("OPERONE_ZMQ_COMPILE", "maybe")
    with pytest.raises(SystemExit, match="use 1"):
        backend.compile_requested()
    monkeypatch.delenv("OPERONE_ZMQ_COMPILE")
    assert backend.compile_requested() is False


def _rebound_except_names(source: str) -> list[str]:
    """``except A as e`` and ``except B as e`` in one function: mypy allows
    it, but mypyc gives ``e`` the type of the first and raises TypeError
    when the second is caught (the error reply is lost)."""
    found = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        seen: dict[str, str] = {}
        for node in ast.walk(fn):
            if isinstance(node, ast.ExceptHandler) and node.name:
                typ = ast.unparse(node.type) if node.type is not None else "BaseException"
                first = seen.setdefault(node.name, typ)
                if first != typ:
                    found.append(f"line {node.lineno}: {fn.name}() binds '{node.name}' to"
                                 f" {first} and to {typ}")
    return found


def test_the_rebound_except_name_check_finds_one() -> None:
    source = ("def f():\n    try:\n        g()\n    except KeyError as e:\n        pass\n"
              "    try:\n        g()\n    except ValueError as e:\n        pass\n")
    assert _rebound_except_names(source) == [
        "line 8: f() binds 'e' to KeyError and to ValueError"]


def test_no_compiled_module_rebinds_an_except_name_to_another_type() -> None:
    problems = []
    for name in _compiled_set():
        parts = name.split(".")[1:]
        path = PACKAGE.joinpath(*parts).with_suffix(".py")
        if not path.exists():
            path = PACKAGE.joinpath(*parts, "__init__.py")
        problems += [f"{name}: {p}" for p in _rebound_except_names(path.read_text())]
    assert problems == []
