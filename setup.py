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
#: against the cores alone).  And the asyncio side of the three processes
#: every job passes, client, broker and worker (aio/client.py, broker.py,
#: worker.py; their futures and async generators, which mypyc cannot
#: compile, are in aio/futures.py): CPU per job at 100 in flight 1.31x ->
#: 1.18x raw's in the client, 0.84x -> 0.76x in the broker, 0.61x -> 0.57x
#: in the worker (four runs alternated against the set above).  And the
#: mesh's routing (routing/: link-state database, Dijkstra, damping, which
#: every relayed hop and every LSA goes through) and QoS (qos/: the token
#: buckets, link metrics and policies every message sent to a peer is
#: charged to).
COMPILED = [
    "operone_zmq/core/",
    "operone_zmq/protocol/",
    "operone_zmq/errors.py",
    "operone_zmq/aio/pump.py",
    "operone_zmq/aio/client.py",
    "operone_zmq/aio/broker.py",
    "operone_zmq/aio/worker.py",
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
