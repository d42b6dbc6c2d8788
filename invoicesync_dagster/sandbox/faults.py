"""Fault injection for the sandbox: rate limits, server errors and slow responses on demand.

A configuration is a list of rules, e.g.::

    {"seed": 7, "rules": [
        {"path_prefix": "/v1/invoices", "status": 429, "retry_after": 1, "times": 2},
        {"path_prefix": "/v1/charges", "status": 500, "times": 1},
        {"path_prefix": "/v1/", "delay_ms": 2000, "times": 1}]}

Rules are checked in order for every (non-control) request; the first rule that fires decides
the request's fate and later rules do not see it. A rule matches on `path_prefix` (and `method`
if given) and fires for the next `times` matching requests (forever when `times` is omitted),
optionally only on every `every_nth` matching request or with `probability` drawn from an RNG
seeded by `seed`, so a run is reproducible.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_RULE_KEYS = {
    "path_prefix",
    "method",
    "status",
    "retry_after",
    "delay_ms",
    "times",
    "every_nth",
    "probability",
    "message",
}


class FaultConfigError(ValueError):
    """A fault configuration that cannot be applied; the message names the rule and field."""


@dataclass
class FaultRule:
    path_prefix: str = "/"
    method: str | None = None
    status: int | None = None
    retry_after: float | None = None
    delay_ms: int = 0
    times: int | None = None
    every_nth: int | None = None
    probability: float | None = None
    message: str | None = None
    seen: int = field(default=0, compare=False)
    fired: int = field(default=0, compare=False)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], index: int = 0) -> FaultRule:
        where = f"fault rule #{index}"
        if not isinstance(raw, Mapping):
            raise FaultConfigError(f"{where}: expected a JSON object, got {raw!r}")
        unknown = sorted(set(raw) - _RULE_KEYS)
        if unknown:
            raise FaultConfigError(
                f"{where}: unknown field(s) {unknown}; allowed: {sorted(_RULE_KEYS)}"
            )
        rule = cls(
            path_prefix=str(raw.get("path_prefix", "/")),
            method=str(raw["method"]).upper() if raw.get("method") else None,
            status=_optional_int(raw, "status", where),
            retry_after=_optional_float(raw, "retry_after", where),
            delay_ms=_optional_int(raw, "delay_ms", where) or 0,
            times=_optional_int(raw, "times", where),
            every_nth=_optional_int(raw, "every_nth", where),
            probability=_optional_float(raw, "probability", where),
            message=str(raw["message"]) if raw.get("message") else None,
        )
        if rule.status is None and rule.delay_ms <= 0:
            raise FaultConfigError(f"{where}: give a 'status' or a positive 'delay_ms'")
        if rule.status is not None and not 400 <= rule.status <= 599:
            raise FaultConfigError(f"{where}: status must be 400..599, got {rule.status}")
        if rule.every_nth is not None and rule.every_nth < 1:
            raise FaultConfigError(f"{where}: every_nth must be >= 1")
        if rule.probability is not None and not 0.0 <= rule.probability <= 1.0:
            raise FaultConfigError(f"{where}: probability must be within 0..1")
        return rule

    def matches(self, method: str, path: str) -> bool:
        return path.startswith(self.path_prefix) and (self.method in (None, method))


@dataclass(frozen=True)
class Fault:
    """What to do to one request: wait `delay_ms`, then answer `status` if it is set."""

    delay_ms: int
    status: int | None
    retry_after: float | None
    message: str | None

    def error_body(self) -> bytes:
        """Stripe's error envelope, so the SDK raises RateLimitError / APIError."""
        if self.status == 429:
            error = {
                "type": "invalid_request_error",
                "code": "rate_limit",
                "message": self.message
                or "Too many requests hit the API too quickly (sandbox fault injection).",
            }
        else:
            error = {
                "type": "api_error",
                "message": self.message
                or f"Simulated server error {self.status} (sandbox fault injection).",
            }
        return json.dumps({"error": error}).encode()

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        # Retry-After is an integer number of seconds on the wire; keep sub-second values usable
        # for fast tests by not rounding them away.
        value = self.retry_after
        return {"Retry-After": str(int(value)) if float(value).is_integer() else str(value)}


class FaultInjector:
    """Thread-safe rule set; `check` is called once per request."""

    def __init__(self, rules: Iterable[FaultRule | Mapping[str, Any]] = (), seed: int = 0):
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._rng = random.Random(seed)
        self.configure({"rules": list(rules), "seed": seed})

    def configure(self, config: Mapping[str, Any]) -> None:
        """Replace all rules (and reseed) from a `{"rules": [...], "seed": N}` mapping."""
        if not isinstance(config, Mapping):
            raise FaultConfigError('fault config must be a JSON object {"rules": [...]}')
        unknown = sorted(set(config) - {"rules", "seed"})
        if unknown:
            raise FaultConfigError(f"fault config: unknown field(s) {unknown}; use rules, seed")
        raw_rules = config.get("rules", [])
        if not isinstance(raw_rules, list):
            raise FaultConfigError("fault config: 'rules' must be a list")
        rules = [
            rule if isinstance(rule, FaultRule) else FaultRule.from_dict(rule, index)
            for index, rule in enumerate(raw_rules)
        ]
        seed = config.get("seed", 0)
        with self._lock:
            self._rules = rules
            self._rng = random.Random(seed)

    def clear(self) -> None:
        self.configure({"rules": []})

    def check(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for rule in self._rules:
                if not rule.matches(method, path):
                    continue
                if rule.times is not None and rule.fired >= rule.times:
                    continue
                rule.seen += 1
                if rule.every_nth is not None and rule.seen % rule.every_nth != 0:
                    continue
                if rule.probability is not None and self._rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                return Fault(rule.delay_ms, rule.status, rule.retry_after, rule.message)
        return None

    def snapshot(self) -> list[dict[str, Any]]:
        """The rules with how often each matched and fired, for `GET /_sandbox/faults`."""
        with self._lock:
            return [
                {
                    "path_prefix": r.path_prefix,
                    "method": r.method,
                    "status": r.status,
                    "retry_after": r.retry_after,
                    "delay_ms": r.delay_ms,
                    "times": r.times,
                    "every_nth": r.every_nth,
                    "probability": r.probability,
                    "seen": r.seen,
                    "fired": r.fired,
                }
                for r in self._rules
            ]


def _optional_int(raw: Mapping[str, Any], key: str, where: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise FaultConfigError(f"{where}: {key} must be an integer, got {value!r}")
    return value


def _optional_float(raw: Mapping[str, Any], key: str, where: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FaultConfigError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)
