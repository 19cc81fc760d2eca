"""``python -m operone_zmq`` runs the ``operone`` command line."""

from operone_zmq.cli import main

main()
