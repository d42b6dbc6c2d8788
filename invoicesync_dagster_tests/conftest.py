"""Shared fixtures: a sandbox server on a free loopback port, started in-process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from invoicesync_dagster.sandbox.server import SandboxServer


@pytest.fixture
def sandbox_factory() -> Iterator[Callable[..., SandboxServer]]:
    """Start sandboxes with custom options (`latency_ms`, `stripe_fixtures`, `faults`...);
    all are stopped at the end of the test."""
    started: list[SandboxServer] = []

    def start(**options: Any) -> SandboxServer:
        server = SandboxServer(**options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def sandbox(sandbox_factory: Callable[..., SandboxServer]) -> SandboxServer:
    """A fresh, empty sandbox for one test."""
    return sandbox_factory()
