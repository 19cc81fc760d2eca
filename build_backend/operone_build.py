"""The PEP 517 backend of operone-zmq: setuptools', plus the optional compiled build.

``OPERONE_ZMQ_COMPILE=1 pip install .`` builds a wheel whose job logic and
message pump (the modules setup.py's ``COMPILED`` names) are compiled to C extensions by
mypyc; it needs a C compiler, and mypy (a build requirement only then).
Without the variable the package is pure Python, as it always is from an
editable install: a compiled module next to its source would be imported
instead of the source, so later edits of the ``.py`` would silently not
count.  An editable build with the variable set is refused, not quietly
built pure (README, "Install").

The compiled modules behave exactly as the pure ones (the test suite runs
against both: tox env ``compiled``); Python stays the source of truth.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import build_meta as _orig

__all__ = [
    "COMPILE_ENV",
    "build_editable",
    "build_sdist",
    "build_wheel",
    "compile_requested",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]

#: The variable that asks for the compiled build ("1"; "" or "0": pure).
COMPILE_ENV = "OPERONE_ZMQ_COMPILE"

#: What compiling needs besides setuptools: mypy (which includes mypyc),
#: 2.x for its strict bytes (a memoryview is not taken for bytes, so the
#: ``bytes | memoryview`` frames of protocol/frame.py stay a union the
#: compiled code lets a zero-copy view through), tested with 2.4; and the
#: dependencies whose types the compiled modules use (mypy reads them; pyzmq
#: and structlog for the pump).
COMPILE_REQUIRES = ["mypy>=2.4,<3", "msgspec>=0.19", "pynacl>=1.5", "pyzmq>=25.1",
                    "structlog>=23.2"]

get_requires_for_build_sdist = _orig.get_requires_for_build_sdist
build_sdist = _orig.build_sdist
prepare_metadata_for_build_wheel = _orig.prepare_metadata_for_build_wheel


def compile_requested() -> bool:
    """Whether the environment asks for the compiled build."""
    value = os.environ.get(COMPILE_ENV, "").strip().lower()
    if value in ("", "0", "no", "false", "off"):
        return False
    if value in ("1", "yes", "true", "on"):
        return True
    raise SystemExit(f"{COMPILE_ENV}={value!r}: use 1 (compiled build) or 0 (pure Python)")


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    extra = COMPILE_REQUIRES if compile_requested() else []
    return [*_orig.get_requires_for_build_wheel(config_settings), *extra]


def build_wheel(wheel_directory: str, config_settings: dict[str, Any] | None = None,
                metadata_directory: str | None = None) -> str:
    # setup.py reads the same variable and adds the extension modules.
    return str(_orig.build_wheel(wheel_directory, config_settings, metadata_directory))


def _refuse_editable() -> None:
    if compile_requested():
        print(f"error: {COMPILE_ENV} is set, but an editable install is always pure Python"
              " (a compiled module next to its source would be imported instead of later"
              f" edits of it). Unset {COMPILE_ENV} for an editable install, or build the"
              " compiled package with `pip install .` (not -e).", file=sys.stderr)
        raise SystemExit(1)


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    _refuse_editable()
    return list(_orig.get_requires_for_build_editable(config_settings))


def prepare_metadata_for_build_editable(metadata_directory: str,
                                        config_settings: dict[str, Any] | None = None) -> str:
    _refuse_editable()
    return str(_orig.prepare_metadata_for_build_editable(metadata_directory, config_settings))


def build_editable(wheel_directory: str, config_settings: dict[str, Any] | None = None,
                   metadata_directory: str | None = None) -> str:
    _refuse_editable()
    return str(_orig.build_editable(wheel_directory, config_settings, metadata_directory))
