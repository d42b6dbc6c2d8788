"""The sandbox HTTP server: one loopback port serving every fake (Stripe, ANAF's public registry,
ANAF OAuth and e-Factura, SmartBill, BNR).

Each request goes to the first fake whose `handle` answers it, the most recently mounted first:
a test can mount its own fake (a registry with other options, a canned answer) over a default.
The server itself owns what is shared by all fakes: the request log, fault injection, the
latency knob and the clock, with control endpoints under `/_sandbox/`:

- `POST /_sandbox/reset`      clear faults, request log and clock; reset every fake
- `POST /_sandbox/faults`     `{"rules": [...], "seed": N}` (see `faults.py`); `GET` shows them
- `GET  /_sandbox/requests`   `{"total", "counts": {"GET /v1/invoices": 3}, "log": [...]}`
- `POST /_sandbox/clock`      `{"now": <unix seconds> | null}`; `GET` shows it
- `GET  /_sandbox/ledger`     `{"uploads": [...], "smartbill_invoices": [...]}`: every document
                              ANAF and SmartBill received, for proving "exactly once"

Control requests are not counted, delayed or faulted. Other `/_sandbox/...` paths go to the
fakes (e.g. `POST /_sandbox/stripe/fixtures`).
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from invoicesync_dagster.sandbox.bnr_fake import BnrFake
from invoicesync_dagster.sandbox.faults import FaultConfigError, FaultInjector, FaultRule
from invoicesync_dagster.sandbox.http import Clock, Fake, Request, Response
from invoicesync_dagster.sandbox.stripe_fake import StripeFake

LOOPBACK = "127.0.0.1"
CONTROL_PREFIX = "/_sandbox/"
_LOG_SIZE = 10_000


class RequestLog:
    """Counts of served requests per `METHOD path` and a bounded log with server-side timings."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._log: deque[dict[str, Any]] = deque(maxlen=_LOG_SIZE)

    def record(
        self, request: Request, status: int, started: float, finished: float, query: str
    ) -> None:
        with self._lock:
            self._counts[f"{request.method} {request.path}"] += 1
            self._log.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": query,
                    "status": status,
                    "started": started,
                    "duration_ms": round((finished - started) * 1000, 3),
                }
            )

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": sum(self._counts.values()),
                "counts": dict(self._counts),
                "log": list(self._log),
            }

    def count(self, method: str, path: str) -> int:
        with self._lock:
            return self._counts[f"{method} {path}"]

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()
            self._log.clear()


class SandboxServer:
    """Threaded HTTP server on 127.0.0.1 with the Stripe fake at `/v1/`, ANAF's registry fake
    at `/api/PlatitorTvaRest/v9/tva` (records derived from the Stripe customers, plus those of
    `registry_fixtures`, a JSON list of v9 `found` records), BNR's rate files at `/bnr/`, ANAF's
    OAuth at `/anaf-oauth2/v1/`, e-Factura at `/{test,prod}/FCTEL/rest/` (accepting the access
    tokens the OAuth fake issued; buyers checked against the registry fake) and SmartBill at
    `/SBORO/api/` (the sandbox account of `smartbill_fake`)."""

    def __init__(
        self,
        host: str = LOOPBACK,
        port: int = 0,
        *,
        latency_ms: int = 0,
        stripe_fixtures: Path | None = None,
        registry_fixtures: Path | None = None,
        faults: list[FaultRule | Mapping[str, Any]] | None = None,
        fault_seed: int = 0,
    ) -> None:
        if host != LOOPBACK:
            raise ValueError(
                f"the sandbox binds to {LOOPBACK} only (got host={host!r}); it must never be "
                "reachable from another machine"
            )
        if latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, got {latency_ms}")
        self.latency_ms = latency_ms
        self.clock = Clock()
        self.faults = FaultInjector(faults or (), seed=fault_seed)
        self.requests = RequestLog()
        self._fakes: list[Fake] = []
        self._request_ids = itertools.count(1)
        # Fixtures load before the port is bound, so a bad file leaves no socket behind.
        self.stripe = StripeFake(clock=self.clock, fixtures=stripe_fixtures)
        self.mount(self.stripe)
        # Imported here: the registry fake imports this module (for Fake, Request, Response).
        from invoicesync_dagster.sandbox.anaf_registry_fake import (
            AnafRegistryFake,
            load_fixture_file,
        )

        records = load_fixture_file(registry_fixtures) if registry_fixtures else ()
        self.registry = AnafRegistryFake(stripe=self.stripe, records=records)
        self.mount(self.registry)
        self.bnr = BnrFake(clock=self.clock)
        self.mount(self.bnr)
        from invoicesync_dagster.sandbox.anaf_efactura_fake import AnafEfacturaFake
        from invoicesync_dagster.sandbox.anaf_oauth_fake import AnafOAuthFake
        from invoicesync_dagster.sandbox.smartbill_fake import SmartBillFake

        self.anaf_oauth = AnafOAuthFake(clock=self.clock)
        self.mount(self.anaf_oauth)
        self.anaf_efactura = AnafEfacturaFake(
            self.clock, registry=self.registry, token_check=self.anaf_oauth.is_valid_access_token
        )
        self.mount(self.anaf_efactura)
        # The account sandbox.dotenv names (the demo company, series FCT).
        self.smartbill = SmartBillFake(self.clock, company_cif="RO4221306")
        self.mount(self.smartbill)
        self._httpd = _HTTPServer((host, port), self)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def mount(self, fake: Fake) -> None:
        """Serve `fake`; it answers before the fakes mounted earlier."""
        self._fakes.insert(0, fake)

    def start(self) -> SandboxServer:
        if self._thread is not None:
            raise RuntimeError("sandbox server already started")
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.01},  # stop() waits up to one poll
            name=f"sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (for the CLI)."""
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        finally:
            self._close()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._close()

    def _close(self) -> None:
        self._httpd.server_close()
        self._httpd.close_connections()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def reset(self) -> None:
        self.faults.clear()
        self.requests.clear()
        self.clock.set(None)
        for fake in self._fakes:
            fake.reset()

    def dispatch(self, request: Request) -> Response:
        """Answer one request: control endpoints, else latency, faults, then the fakes."""
        if request.path.startswith(CONTROL_PREFIX):
            response = self._control(request) or self._to_fakes(request)
        else:
            response = self._serve_api(request)
        response.headers.setdefault("Request-Id", f"req_sandbox{next(self._request_ids):08d}")
        return response

    def _serve_api(self, request: Request) -> Response:
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        fault = self.faults.check(request.method, request.path)
        if fault is not None:
            if fault.delay_ms:
                time.sleep(fault.delay_ms / 1000)
            if fault.status is not None:
                return Response(fault.status, fault.error_body(), fault.headers())
        return self._to_fakes(request)

    def _to_fakes(self, request: Request) -> Response:
        for fake in self._fakes:
            response = fake.handle(request)
            if response is not None:
                return response
        return _error(404, f"Unrecognized request URL ({request.method}: {request.path}).")

    def _control(self, request: Request) -> Response | None:
        name = request.path[len(CONTROL_PREFIX) :].rstrip("/")
        method = request.method
        try:
            if (method, name) == ("POST", "reset"):
                self.reset()
                return Response.json(200, {"reset": True})
            if (method, name) == ("GET", "requests"):
                return Response.json(200, self.requests.snapshot())
            if (method, name) == ("GET", "faults"):
                return Response.json(200, {"rules": self.faults.snapshot()})
            if (method, name) == ("POST", "faults"):
                self.faults.configure(request.json() or {})
                return Response.json(200, {"rules": self.faults.snapshot()})
            if (method, name) == ("GET", "ledger"):
                return Response.json(
                    200,
                    {
                        "uploads": self.anaf_efactura.ledger_entries(),
                        "smartbill_invoices": self.smartbill.ledger_entries(),
                    },
                )
            if (method, name) == ("GET", "clock"):
                return Response.json(200, {"now": self.clock.now(), "pinned": self.clock.pinned})
            if (method, name) == ("POST", "clock"):
                self.clock.set(_parse_clock(request.json()))
                return Response.json(200, {"now": self.clock.now(), "pinned": self.clock.pinned})
        except (ValueError, FaultConfigError) as exc:
            return _error(400, f"{request.method} {request.path}: {exc}")
        return None


def _parse_clock(payload: Any) -> int | None:
    if not isinstance(payload, dict) or "now" not in payload:
        raise ValueError('expected {"now": <unix seconds>} or {"now": null} for real time')
    now = payload["now"]
    if now is not None and (isinstance(now, bool) or not isinstance(now, int)):
        raise ValueError(f"'now' must be integer unix seconds or null, got {now!r}")
    return now


def _error(status: int, message: str) -> Response:
    return Response.json(status, {"error": {"type": "invalid_request_error", "message": message}})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK reuses one connection per thread
    # Without this every keep-alive response waits on Nagle + delayed ACK (~40 ms each).
    disable_nagle_algorithm = True
    # Idle keep-alive connections give their thread back after this many seconds.
    timeout = 60
    server: _HTTPServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def _serve(self) -> None:
        started = time.time()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        target = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=target.path,
            query=parse_qsl(target.query, keep_blank_values=True),
            headers=self.headers,  # type: ignore[arg-type]  # HTTPMessage is a Mapping
            body=body,
        )
        sandbox = self.server.sandbox
        try:
            response = sandbox.dispatch(request)
        except Exception as exc:  # a bug in a fake must not kill the connection silently
            response = Response.json(
                500,
                {"error": {"type": "api_error", "message": f"sandbox bug: {exc!r}"}},
            )
        if not request.path.startswith(CONTROL_PREFIX):
            # Recorded before the answer is written so a client sees its own request counted.
            sandbox.requests.record(
                request, response.status, started, time.time(), unquote(target.query)
            )
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging; the request log is at /_sandbox/requests."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Many concurrent time slices connect at once; the default backlog of 5 drops SYNs.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (its timeout, on purpose in the fault tests) is not an error."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        with self._connections_lock:
            self._connections.add(connection)
        return connection, address

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Hang up on keep-alive clients so a stopped server answers nothing more."""
        with self._connections_lock:
            connections = list(self._connections)
            self._connections.clear()
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)
