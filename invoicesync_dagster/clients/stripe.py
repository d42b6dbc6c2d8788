"""Read Stripe (or the sandbox) fast and safely: plain dicts, concurrent time slices, retries.

A thin layer over the official SDK. `StripeClient` (API base from `STRIPE_API_BASE`, SDK retries
off) does the HTTP, auth headers, parameter encoding and error envelopes; everything here returns
plain dicts decoded from the response body, because building SDK objects caps listing at ~1,000
objects/s per process while raw JSON reaches ~4,000/s (see STRIPE-SANDBOX.md, "Where the time
goes"). Requests take `raw_request`'s path without its extra decoding (see `_send_get`).
Retries are ours: 429 (honouring Retry-After, capped), 5xx, connection errors and timeouts, with
exponential backoff and jitter; other 4xx become typed errors at once. The API key never appears
in our messages.

Thread safety: in stripe 16.1.0 the default `RequestsClient` keeps its `requests.Session` in a
`threading.local`, and the requestor holds no per-request state, so one `StripeClient` is shared
by all worker threads (each thread gets its own session and connection pool).

Slicing (`list_window`): the window is first cut into `concurrency` equal slices. A slice whose
first page says `has_more` is split again from what that page shows: the page covers the newest
seconds of the slice, so its density estimates how many objects are left, and the rest of the
slice is cut into enough sub-slices for about one full page each (at most `concurrency`; a dense
sub-slice simply splits again). Dense hours are cut finely, sparse ones not at all, and a large
day costs about one round trip per 100 objects spread over `concurrency` workers, instead of one
sequential page chain.

Borders: a slice is the half-open range `created[gte]..created[lt]`, so every second belongs to
exactly one slice. The oldest second on a full page may be cut by the page limit: its objects on
that page are either dropped and refetched with the rest of the slice (when they are few), or
kept and the second is finished with its own `starting_after` chain (when they are many, or when
nothing else would make progress, e.g. 500 objects created in the same second).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, NoReturn, cast
from urllib.parse import quote

import orjson
import stripe as stripe_sdk

STRIPE_RESOURCES = (
    "customers",
    "invoices",
    "charges",
    "payment_intents",
    "refunds",
    "credit_notes",
    "events",
)

PAGE_LIMIT = 100
# The longest Retry-After we honour; a server asking for more is treated as this.
MAX_RETRY_AFTER_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 30.0
# Params list_window sets itself; passing them too would silently break the slicing.
_WINDOW_PARAMS = {"created", "limit", "starting_after", "ending_before"}


class StripeError(Exception):
    """A Stripe request failed; the message names the request and what to do about it."""

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class StripeNotFound(StripeError):
    """An id (or an API path) that Stripe does not know."""


class StripeAuthError(StripeError):
    """The API key is missing, invalid or lacks permission."""


@dataclass(frozen=True)
class _Slice:
    """Objects with gte <= created < lt; with `after`, only those listed after that id."""

    gte: int
    lt: int
    after: str | None = None


class StripeReader:
    def __init__(
        self,
        api_key: str,
        api_base: str | None = None,
        *,
        concurrency: int = 8,
        slice_seconds: int | None = None,
        max_retries: int = 5,
        backoff_seconds: float = 0.5,
        timeout_seconds: float = 30.0,
    ) -> None:
        """`slice_seconds` fixes the initial slice length instead of `concurrency` equal slices
        (slices are still split further where a page shows more objects)."""
        if not api_key:
            raise StripeAuthError("No Stripe API key: set STRIPE_API_KEY (sk_test_... for tests)")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if slice_seconds is not None and slice_seconds < 1:
            raise ValueError(f"slice_seconds must be >= 1, got {slice_seconds}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.api_base = (api_base or stripe_sdk.DEFAULT_API_BASE).rstrip("/")
        self.concurrency = concurrency
        self.slice_seconds = slice_seconds
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self._api_key = api_key
        self._client = stripe_sdk.StripeClient(
            api_key,
            base_addresses={"api": self.api_base},
            max_network_retries=0,  # our own loop below honours Retry-After and caps the wait
            http_client=stripe_sdk.RequestsClient(timeout=timeout_seconds),
        )
        self._requests_lock = threading.Lock()
        self.requests_made = 0

    # -- public API ------------------------------------------------------------------------

    def list_window(
        self,
        resource: str,
        start: int,
        end: int,
        *,
        params: dict | None = None,
        on_page: Callable[[int], None] | None = None,
    ) -> Iterator[list[dict]]:
        """Every object of `resource` with start <= created < end (unix seconds), as pages of dicts.

        Slices of the window are fetched concurrently (at most `concurrency` requests in flight,
        and at most that many fetched pages waiting for the consumer); pages are yielded as they
        arrive, in no particular order. No object is lost or duplicated at slice borders.
        `on_page(n)` is called with the object count of each yielded page (progress bars).
        """
        path = _list_path(resource)
        extra = dict(params or {})
        clash = sorted(_WINDOW_PARAMS & set(extra))
        if clash:
            raise ValueError(f"list_window sets {clash} itself; pass only filters and expand")
        if end <= start:
            return
        todo = deque(self._initial_slices(start, end))
        stop = threading.Event()  # set when the caller stops or a slice failed
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"stripe-{resource}")
        running: set[Future[tuple[list[dict], list[_Slice]]]] = set()
        try:
            while todo or running:
                while todo and len(running) < self.concurrency:
                    running.add(pool.submit(self._fetch_slice, path, extra, todo.popleft(), stop))
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    page, more = future.result()
                    todo.extend(more)
                    if page:
                        if on_page is not None:
                            on_page(len(page))
                        yield page
        finally:
            stop.set()
            for future in running:
                future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)

    def retrieve(self, resource: str, object_id: str, *, expand: Sequence[str] = ()) -> dict:
        """One object by id; StripeNotFound names the id when Stripe does not know it."""
        _check_resource(resource)
        return self._retrieve(resource, object_id, expand, None)

    def retrieve_many(
        self,
        resource: str,
        ids: Iterable[str],
        *,
        expand: Sequence[str] = (),
        missing: list[str] | None = None,
    ) -> Iterator[dict]:
        """`retrieve` for each id, `concurrency` at a time, yielded in the order of `ids`.

        With a `missing` list, ids Stripe does not know are appended to it and skipped instead
        of raising StripeNotFound, so one dangling reference does not stop a whole day.
        """
        _check_resource(resource)
        stop = threading.Event()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"stripe-{resource}")
        pending: deque[tuple[str, Future[dict]]] = deque()

        def take() -> Iterator[dict]:
            object_id, future = pending.popleft()
            try:
                yield future.result()
            except StripeNotFound:
                if missing is None:
                    raise
                missing.append(object_id)

        try:
            for object_id in ids:
                future = pool.submit(self._retrieve, resource, object_id, expand, stop)
                pending.append((object_id, future))
                if len(pending) >= 2 * self.concurrency:
                    yield from take()
            while pending:
                yield from take()
        finally:
            stop.set()
            for _, future in pending:
                future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)

    def list_all(
        self, resource: str, *, params: dict | None = None, limit: int | None = None
    ) -> Iterator[dict]:
        """Plain sequential listing (filters like status/customer), newest first — for the CLI.

        Stops after `limit` objects when given.
        """
        query = dict(params or {})
        if "limit" in query or "ending_before" in query:
            raise ValueError("list_all pages by itself: pass `limit=` instead of params['limit']")
        return self._paginate(_list_path(resource), query, limit)

    def list_lines(self, resource: str, object_id: str) -> Iterator[dict]:
        """Every line of an invoice or credit note: the object embeds only the first ten."""
        if resource not in ("invoices", "credit_notes"):
            raise ValueError(
                f"list_lines: only invoices and credit_notes have lines, not {resource}"
            )
        return self._paginate(f"/v1/{resource}/{quote(object_id, safe='')}/lines", {}, None)

    def _paginate(self, path: str, query: dict, limit: int | None) -> Iterator[dict]:
        left = math.inf if limit is None else limit
        while left > 0:
            body = self._get(path, {**query, "limit": int(min(PAGE_LIMIT, left))})
            page = body["data"]
            yield from page[: int(min(len(page), left))]
            left -= len(page)
            if not body.get("has_more") or not page:
                return
            query = {**query, "starting_after": page[-1]["id"]}

    def _retrieve(
        self,
        resource: str,
        object_id: str,
        expand: Sequence[str],
        stop: threading.Event | None,
    ) -> dict:
        if not object_id or not isinstance(object_id, str):
            raise ValueError(f"retrieve({resource!r}): object id must be a non-empty string")
        params: dict[str, Any] = {"expand": list(expand)} if expand else {}
        path = f"/v1/{resource}/{quote(object_id, safe='')}"
        return self._get(path, params, missing=(resource, object_id), stop=stop)

    # -- slicing ---------------------------------------------------------------------------

    def _initial_slices(self, start: int, end: int) -> list[_Slice]:
        if self.slice_seconds is not None:
            step = self.slice_seconds
            return [_Slice(t, min(t + step, end)) for t in range(start, end, step)]
        return _equal_slices(start, end, self.concurrency)

    def _fetch_slice(
        self, path: str, params: dict, piece: _Slice, stop: threading.Event
    ) -> tuple[list[dict], list[_Slice]]:
        """One page of `piece`: the objects to emit and the slices still to fetch."""
        query = {**params, "created": {"gte": piece.gte, "lt": piece.lt}, "limit": PAGE_LIMIT}
        if piece.after is not None:
            query["starting_after"] = piece.after
        body = self._get(path, query, stop=stop)
        page: list[dict] = body["data"]
        if not body.get("has_more") or not page:
            return page, []
        if piece.after is not None:
            # A chain inside one second: nothing left to split, just follow it.
            return page, [_Slice(piece.gte, piece.lt, page[-1]["id"])]

        # Newest first: the page holds everything newer than its oldest second `oldest`, and
        # maybe only part of `oldest`.
        oldest = page[-1]["created"]
        newer = [obj for obj in page if obj["created"] > oldest]
        at_oldest = len(page) - len(newer)
        if oldest + 1 < piece.lt and at_oldest * 2 <= len(page):
            # Few objects at `oldest`: drop them, the remainder [gte, oldest] fetches them again.
            emitted, rest_end, chain = newer, oldest + 1, []
        else:
            # Many objects in that second (or it is the slice's newest second, so dropping would
            # not make progress): keep them and finish the second with its own page chain.
            emitted, rest_end = page, oldest
            chain = [_Slice(oldest, oldest + 1, page[-1]["id"])]
        if rest_end <= piece.gte:
            return emitted, chain
        # The page spans [oldest, lt); assume the same density for the rest of the slice. At
        # most `concurrency` parts: a burst at the slice's end must not fan out into hundreds
        # of empty requests, and a dense part simply splits again.
        density = len(page) / (piece.lt - oldest)
        expected = density * (rest_end - piece.gte)
        parts = min(self.concurrency, max(1, math.ceil(expected / PAGE_LIMIT)))
        return emitted, chain + _equal_slices(piece.gte, rest_end, parts)

    # -- HTTP, retries, errors -------------------------------------------------------------

    def _get(
        self,
        path: str,
        params: dict[str, Any],
        *,
        missing: tuple[str, str] | None = None,
        stop: threading.Event | None = None,
    ) -> dict:
        """GET `path` as a plain dict, retrying 429/5xx/connection errors with backoff.

        Retrying ends early once `stop` is set: nobody waits for the answer any more.
        """
        attempt = 0
        while True:
            if stop is not None and stop.is_set():
                raise StripeError(f"GET {path} cancelled: the listing was stopped")
            with self._requests_lock:
                self.requests_made += 1
            try:
                body, status = self._send_get(path, params)
            except stripe_sdk.StripeError as error:
                failure = error
            else:
                try:
                    return orjson.loads(body)
                except orjson.JSONDecodeError:
                    raise self._error(
                        StripeError,
                        f"GET {path}: the answer (HTTP {status}) is not JSON; check that "
                        f"STRIPE_API_BASE ({self.api_base}) points at Stripe or the sandbox",
                        status,
                    ) from None
            # Handled outside the `except` so that the SDK error, whose message may quote
            # request values, is not chained to ours as its context.
            status = failure.http_status
            retryable = (
                isinstance(failure, stripe_sdk.RateLimitError | stripe_sdk.APIConnectionError)
                or status == 429
                or (status is not None and status >= 500)
            )
            if not retryable:
                self._raise_typed(failure, path, missing)
            if attempt >= self.max_retries:
                raise self._error(
                    StripeError,
                    f"GET {path} still failing after {attempt + 1} attempts "
                    f"({self._describe(failure)}); Stripe or the network is unavailable or "
                    "rate limiting: retry later, lower the fetch concurrency "
                    "(STRIPE_FETCH_CONCURRENCY) or raise max_retries",
                    status,
                )
            self._pause(self._delay(failure, attempt), stop)
            attempt += 1

    def _send_get(self, path: str, params: dict[str, Any]) -> tuple[bytes, int]:
        """One GET through the SDK's requestor: the raw body, or the SDK's typed error.

        This is `StripeClient.raw_request` minus its decoding of every body into OrderedDicts,
        which we would only decode again into plain dicts: on 2 cores that double decoding
        halved the listing rate (measured 2,100 vs 4,000 invoices/s at 100 ms latency). It uses
        the requestor behind raw_request exactly as raw_request does (private API of the
        pinned stripe 16.1.0; every test in test_stripe_client.py goes through here).
        """
        requestor = self._client._requestor
        body, status, headers = requestor.request_raw(
            "get",
            path,
            params=params,
            options={},
            base_address="api",
            api_mode="V1",
            usage=["raw_request"],
        )
        if not 200 <= status < 300:
            requestor._interpret_response(body, status, headers, "V1")  # raises StripeError
        return cast(bytes, body), status

    def _pause(self, seconds: float, stop: threading.Event | None) -> None:
        """Wait before a retry, less if `stop` is set meanwhile (tests replace this)."""
        if stop is None:
            time.sleep(seconds)
        else:
            stop.wait(seconds)

    def _delay(self, error: stripe_sdk.StripeError, attempt: int) -> float:
        retry_after = _retry_after_seconds(error)
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_SECONDS)
        # Exponential backoff with jitter so that concurrent slices do not retry in lockstep.
        backoff = self.backoff_seconds * 2**attempt * (0.5 + random.random())
        return min(backoff, MAX_BACKOFF_SECONDS)

    def _raise_typed(
        self, error: stripe_sdk.StripeError, path: str, missing: tuple[str, str] | None
    ) -> NoReturn:
        status = error.http_status
        if status == 404 and missing is not None:
            resource, object_id = missing
            raise self._error(
                StripeNotFound,
                f"No such {_singular(resource)} {object_id!r} "
                "(check the id / the STRIPE_API_KEY account)",
                status,
            )
        if status == 404:
            raise self._error(
                StripeNotFound,
                f"GET {path}: not found ({self._describe(error)}); check that STRIPE_API_BASE "
                f"({self.api_base}) points at Stripe or the sandbox",
                status,
            )
        if isinstance(error, stripe_sdk.AuthenticationError | stripe_sdk.PermissionError):
            raise self._error(
                StripeAuthError,
                f"GET {path}: Stripe rejected the API key ({self._describe(error)}); set a valid "
                "STRIPE_API_KEY with read access to this account",
                status,
            )
        param = getattr(error, "param", None)
        where = f" parameter {param!r}" if param else ""
        raise self._error(
            StripeError,
            f"GET {path}: Stripe rejected the request{where} ({self._describe(error)}); "
            "fix the parameter or the filter value",
            status,
        )

    def _describe(self, error: stripe_sdk.StripeError) -> str:
        """Status, code and message of an SDK error."""
        parts = [f"HTTP {error.http_status}" if error.http_status else type(error).__name__]
        if error.code:
            parts.append(str(error.code))
        message = error.user_message or str(error) or ""
        if isinstance(error, stripe_sdk.APIConnectionError):
            message = message.split("(Network error:", 1)[-1].rstrip(")").strip()
        if message:
            parts.append(message)
        return ": ".join(parts)

    def _error(self, kind: type[StripeError], message: str, status: int | None) -> StripeError:
        """Our exception, with the API key masked wherever the message might quote it."""
        return kind(message.replace(self._api_key, "[redacted API key]"), http_status=status)


def _retry_after_seconds(error: stripe_sdk.StripeError) -> float | None:
    if error.http_status != 429:
        return None
    value = (error.headers or {}).get("Retry-After")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:  # an HTTP date: not worth parsing, use our backoff instead
        return None
    return None if seconds is None or seconds < 0 or math.isnan(seconds) else seconds


def _equal_slices(start: int, end: int, parts: int) -> list[_Slice]:
    """`parts` contiguous slices of [start, end), never shorter than one second."""
    parts = max(1, min(parts, end - start))
    bounds = [start + (end - start) * i // parts for i in range(parts + 1)]
    return [_Slice(lo, hi) for lo, hi in pairwise(bounds) if hi > lo]


def _check_resource(resource: str) -> None:
    if resource not in STRIPE_RESOURCES:
        raise ValueError(f"unknown Stripe resource {resource!r}; use one of {STRIPE_RESOURCES}")


def _list_path(resource: str) -> str:
    _check_resource(resource)
    return f"/v1/{resource}"


def _singular(resource: str) -> str:
    return resource.removesuffix("s").replace("_", " ")
