"""``operone dashboard``: a live web dashboard and Prometheus metrics.

A separate process, an ordinary authenticated client of one broker (the
node's keys, CurveZMQ): ``poller`` asks the broker, ``model`` and
``metrics`` turn the answers into the page's snapshot and metric families
(no I/O), ``server`` serves them with aiohttp.  Needs the ``dashboard``
extra: ``pip install 'operone-zmq[dashboard]'``.  See docs/dashboard.md.
"""
