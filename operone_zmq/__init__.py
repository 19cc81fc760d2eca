"""operone-zmq: a secure ZeroMQ mesh for running tools on many PCs."""

from __future__ import annotations

__version__ = "0.1.0"
