"""setuptools' side of the optional compiled build (build_backend/operone_build.py).

Everything about the package is in pyproject.toml; this only adds the mypyc
extension modules when ``OPERONE_ZMQ_COMPILE=1`` and a wheel is built.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

#: The modules compiled by mypyc: the no-I/O job logic every job and every
#: hop goes through (broker, worker and client cores, the codec, the errors),
#: measured with scripts/bench_cores.py (CPU per job of the job logic alone:
#: 0.72x); and the pump, which reads and writes every message of every
#: process (measured with scripts/bench.py --quick foundation, five runs
#: alternated: broker CPU per job 0.95x -> 0.81x raw's, worker 1.00x -> 0.86x,
#: against the cores alone).  And the asyncio side of the client, broker
#: and worker (aio/client.py, broker.py, worker.py; the futures and async
#: generators mypyc cannot compile are in aio/futures.py), the mesh's
#: routing (routing/: link state, Dijkstra, damping) and QoS (qos/: token
#: buckets, link metrics): measured with scripts/bench.py --quick mesh, four
#: runs alternated against the set above on an idle machine, the CPU each
#: relayed hop adds went 71 -> 57 us per job (0.74x -> 0.59x the raw relay's)
#: and the p50 it adds 655 -> 583 us; on one hop (--quick foundation) the
#: CPU per job did not change beyond the noise.  And the in-process tools'
#: runner (aio/inproc.py), the like-for-like shape against the original
#: (scripts/bench_inproc.py).  And the tool specs and registry
#: (tools/spec.py, tools/registry.py: ToolRegistry.get and ToolSpec.prepare
#: run for every job; ToolsConfig, which checks config-file values in its
#: __post_init__, is in the interpreted tools/config.py).
#:
#: The classes made once per job have an ``__init__`` of their own: mypyc
#: compiles a dataclass, but its generated ``__init__`` stays interpreted
#: (counted with callgrind: 8,100 instructions to make an Origin).
COMPILED = [
    "operone_zmq/core/",
    "operone_zmq/protocol/",
    "operone_zmq/errors.py",
    "operone_zmq/aio/pump.py",
    "operone_zmq/aio/client.py",
    "operone_zmq/aio/broker.py",
    "operone_zmq/aio/worker.py",
    "operone_zmq/aio/inproc.py",
    "operone_zmq/tools/spec.py",
    "operone_zmq/tools/registry.py",
    "operone_zmq/routing/",
    "operone_zmq/qos/",
]

#: The commands of a wheel build (not of ``egg_info`` / ``dist_info``,
#: which only read the metadata, before mypy is installed).
_BUILDING = {"bdist_wheel", "build", "build_ext"}


def _compile() -> bool:
    value = os.environ.get("OPERONE_ZMQ_COMPILE", "").strip().lower()
    return value in ("1", "yes", "true", "on") and bool(_BUILDING & set(sys.argv[1:]))


#: mypy options of the build (besides pyproject.toml's [tool.mypy]): the
#: modules it is not compiling (the rest of the package, which
#: operone_zmq/__init__.py names for type checkers) are read for their types
#: but not checked, so building needs only the dependencies the compiled
#: modules import (build_backend/operone_build.py COMPILE_REQUIRES), not
#: pyzmq, structlog, zeroconf ...  (``mypy operone_zmq`` checks them all.)
MYPY_OPTIONS = ["--follow-imports=silent"]

if _compile():
    from mypyc.build import mypycify

    setup(ext_modules=mypycify([*MYPY_OPTIONS, *COMPILED], opt_level="3",
                               group_name="operone_zmq"))
else:
    setup()
