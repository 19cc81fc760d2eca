"""The daemons' event loop (aio/runtime.run_service): OPERONE_EVENT_LOOP
picks it; uvloop by default where it is installed, asyncio's otherwise; a
bad value or a missing uvloop is a ConfigError before anything runs."""

from __future__ import annotations

import asyncio
import importlib.util
import warnings

import pytest

from operone_zmq.aio import runtime
from operone_zmq.aio.runtime import event_loop_choice, event_loop_name, run_service
from operone_zmq.errors import ConfigError

HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


async def _which() -> str:
    await asyncio.sleep(0)
    return event_loop_name()


def test_asyncio_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPERONE_EVENT_LOOP", "asyncio")
    assert event_loop_choice() == "asyncio"
    assert run_service(_which()) == "asyncio"


@pytest.mark.skipif(not HAS_UVLOOP, reason="uvloop is not installed (it has no Windows build)")
@pytest.mark.parametrize("value", [None, "", "auto", "uvloop", " UVLOOP "])
def test_uvloop_by_default_and_when_asked(monkeypatch: pytest.MonkeyPatch,
                                          value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("OPERONE_EVENT_LOOP", raising=False)
    else:
        monkeypatch.setenv("OPERONE_EVENT_LOOP", value)
    assert event_loop_choice() == "uvloop"
    assert run_service(_which()) == "uvloop"


def test_auto_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_uvloop_run", lambda: None)
    monkeypatch.delenv("OPERONE_EVENT_LOOP", raising=False)
    assert run_service(_which()) == "asyncio"


@pytest.mark.parametrize(("value", "missing", "why"), [
    ("trio", False, "OPERONE_EVENT_LOOP must be one of auto, uvloop, asyncio, not 'trio'"),
    ("uvloop", True, "OPERONE_EVENT_LOOP=uvloop, but uvloop is not installed here"),
])
def test_a_bad_choice_is_a_config_error_and_runs_nothing(
        monkeypatch: pytest.MonkeyPatch, value: str, missing: bool, why: str) -> None:
    monkeypatch.setenv("OPERONE_EVENT_LOOP", value)
    if missing:
        monkeypatch.setattr(runtime, "_uvloop_run", lambda: None)
    ran = []

    async def main() -> None:
        ran.append(1)

    with pytest.raises(ConfigError, match=why):
        event_loop_choice()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine was never awaited"
        with pytest.raises(ConfigError, match=why):
            run_service(main())
    assert ran == []
