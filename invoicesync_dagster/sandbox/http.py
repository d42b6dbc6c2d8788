"""The small HTTP vocabulary every sandbox fake speaks: requests, responses, the clock."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: Mapping[str, str]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """Case-insensitive header lookup (HTTP headers are case-insensitive)."""
        value = self.headers.get(name)
        if value is not None:
            return value
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        return cls(status, body, dict(headers or {}))


class Fake(Protocol):
    """A fake service mounted on the server, answering the paths it owns."""

    def handle(self, request: Request) -> Response | None:
        """Answer the request, or None when the path is not this fake's."""
        ...

    def reset(self) -> None:
        """Return to the state the fake had at server start."""
        ...


class Clock:
    """The sandbox's notion of "now" (unix seconds): real time unless pinned."""

    def __init__(self, now: int | None = None) -> None:
        self._pinned = now

    def now(self) -> int:
        return self._pinned if self._pinned is not None else int(time.time())

    @property
    def pinned(self) -> int | None:
        return self._pinned

    def set(self, now: int | None) -> None:
        self._pinned = now
