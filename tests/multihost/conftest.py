"""Fixtures for multi-host tests in network namespaces."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from netns_hosts import Hosts, can_make_namespaces


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    """Three namespaces A - B - C, removed afterwards."""
    why = can_make_namespaces()
    if why is not None:
        pytest.skip(why)
    h = Hosts()
    try:
        h.create()
        yield h
    finally:
        h.destroy()
