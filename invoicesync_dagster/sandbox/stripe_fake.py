"""A stateful fake of Stripe's REST API (the read side the pipeline uses), served at `/v1/`.

Objects are loaded as JSON exactly as Stripe's API returns them (JSONL fixtures: one object per
line) and are treated generically by `object`, `id` and `created`. Each object type has one index
sorted on `(-created, insertion sequence)`, so list ranges and cursors are found with `bisect`
and a page costs O(log n + page). Objects are serialized once, at load, and a page without
`expand` is assembled by joining those bytes.

List semantics follow Stripe's: newest first (ties in insertion order), `created` exact or any
of gt/gte/lt/lte, `limit` 1..100 (default 10), `starting_after` / `ending_before`, exact
`has_more`, `expand[]`, per-resource filters, and Stripe's error envelope for unknown parameters
and ids. Events older than 30 days (by the sandbox clock) are gone, as on Stripe.

Control endpoint: `POST /_sandbox/stripe/fixtures[?replace=1]` with a JSONL body loads (upserts
by id) objects; `GET /_sandbox/stripe/stats` shows object counts and how many stored records
list requests examined (to check that paging does not scan).
"""

from __future__ import annotations

import base64
import bisect
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

from invoicesync_dagster.sandbox.http import Clock, Request, Response

EVENT_RETENTION_SECONDS = 30 * 24 * 3600
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
EMBEDDED_LINES = 10  # Stripe embeds the first 10 lines of an invoice / credit note
MAX_EXPAND_DEPTH = 4
_DOC_URL = "https://stripe.com/docs/error-codes/"

# Object types that have a list endpoint (and so a sorted index), with `created` required.
LISTED_TYPES = (
    "customer",
    "tax_id",
    "invoice",
    "charge",
    "payment_intent",
    "refund",
    "credit_note",
    "event",
)


@dataclass(frozen=True)
class Resource:
    object_type: str
    filters: frozenset[str]  # query parameters that filter on the object's field of that name


RESOURCES: dict[str, Resource] = {
    "customers": Resource("customer", frozenset({"email"})),
    "invoices": Resource(
        "invoice", frozenset({"status", "customer", "subscription", "collection_method"})
    ),
    "charges": Resource("charge", frozenset({"customer", "payment_intent", "transfer_group"})),
    "payment_intents": Resource("payment_intent", frozenset({"customer"})),
    "refunds": Resource("refund", frozenset({"charge", "payment_intent"})),
    "credit_notes": Resource("credit_note", frozenset({"invoice", "customer"})),
    "events": Resource("event", frozenset()),  # `type` / `types[]` are matched specially
}
# Fields kept beside the serialized bytes so filters need not parse JSON.
_FILTER_FIELDS: dict[str, frozenset[str]] = {
    r.object_type: r.filters for r in RESOURCES.values()
} | {"event": frozenset({"type"}), "tax_id": frozenset({"customer"})}
# Fields that Stripe only returns when expanded ("includable"), per object type.
_INCLUDABLE: dict[str, frozenset[str]] = {"customer": frozenset({"tax_ids"})}
_SUBLISTS = {("invoices", "lines"), ("credit_notes", "lines"), ("customers", "tax_ids")}
_SUBLIST_ITEM = {"lines": "line item", "tax_ids": "tax_id"}
_CREATED_KEY = re.compile(r"created\[(gt|gte|lt|lte)\]")
_LIST_KEY = re.compile(r"(expand|types)\[(\d*)\]")

T = TypeVar("T")


class StripeApiError(Exception):
    """An error answered in Stripe's envelope, so the SDK raises the matching exception."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param

    def response(self) -> Response:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = _DOC_URL + self.code.replace("_", "-")
        if self.param:
            error["param"] = self.param
        return Response.json(self.status, {"error": error})


class FixtureError(ValueError):
    """A fixture object that cannot be loaded; the message names the line and the id."""


def _unknown_param(key: str) -> StripeApiError:
    return StripeApiError(
        400, f"Received unknown parameter: {key}", code="parameter_unknown", param=key
    )


def _no_such(object_type: str, object_id: str, param: str, status: int) -> StripeApiError:
    return StripeApiError(
        status, f"No such {object_type}: '{object_id}'", code="resource_missing", param=param
    )


def _serialize(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _ref_id(value: Any) -> Any:
    """The id behind a possibly expanded reference (`"cus_1"` or `{"id": "cus_1", ...}`)."""
    return value.get("id") if isinstance(value, dict) else value


@dataclass(slots=True)
class _Record:
    id: str
    type: str
    created: int
    seq: int
    raw: bytes
    fields: dict[str, Any]

    @property
    def key(self) -> tuple[int, int]:
        return (-self.created, self.seq)


class _Index:
    """Records of one type sorted newest first; `keys[i]` is `records[i].key`."""

    def __init__(self) -> None:
        self.keys: list[tuple[int, int]] = []
        self.records: list[_Record] = []

    def __len__(self) -> int:
        return len(self.records)

    def add_many(self, records: list[_Record]) -> None:
        merged = sorted(self.records + records, key=lambda r: r.key)
        self.records = merged
        self.keys = [r.key for r in merged]

    def position(self, record: _Record) -> int:
        return bisect.bisect_left(self.keys, record.key)

    def remove(self, record: _Record) -> None:
        i = self.position(record)
        if i == len(self.records) or self.records[i] is not record:
            raise RuntimeError(f"sandbox index out of sync for {record.id}")
        del self.keys[i]
        del self.records[i]

    def span(self, lowest: int | None, highest: int | None) -> tuple[int, int]:
        """The slice of records with lowest <= created <= highest (None = unbounded)."""
        start = 0 if highest is None else bisect.bisect_left(self.keys, (-highest, -1))
        end = len(self.keys) if lowest is None else bisect.bisect_left(self.keys, (-lowest + 1, -1))
        return start, max(start, end)


@dataclass
class _ListParams:
    limit: int = DEFAULT_LIMIT
    starting_after: str | None = None
    ending_before: str | None = None
    expand: list[str] = field(default_factory=list)
    lowest: int | None = None  # created >= lowest
    highest: int | None = None  # created <= highest
    equals: dict[str, str] = field(default_factory=dict)
    event_type: str | None = None
    event_types: list[str] = field(default_factory=list)


class StripeFake:
    """The Stripe store and its `/v1/` endpoints (a `Fake` for `SandboxServer.mount`)."""

    def __init__(self, clock: Clock | None = None, fixtures: Path | None = None) -> None:
        self.clock = clock or Clock()
        self.fixtures = fixtures
        self._lock = threading.RLock()
        self._clear()
        if fixtures is not None:
            self.load_jsonl(fixtures)

    # -- store -----------------------------------------------------------------------------

    def _clear(self) -> None:
        self._by_id: dict[str, _Record] = {}
        self._indexes: dict[str, _Index] = {t: _Index() for t in LISTED_TYPES}
        self._full_lines: dict[str, list[dict[str, Any]]] = {}  # parent id -> all its lines
        self._tax_ids_by_customer: dict[str, list[_Record]] | None = None  # built on demand
        self._next_seq = 0
        self.examined = 0  # stored records looked at by list requests since the last reset

    def reset(self) -> None:
        """Back to the fixtures file given at start (or empty)."""
        with self._lock:
            self._clear()
            if self.fixtures is not None:
                self.load_jsonl(self.fixtures)

    def clear(self) -> None:
        with self._lock:
            self._clear()

    def load_jsonl(self, path: Path) -> dict[str, int]:
        return self.load_jsonl_bytes(Path(path).read_bytes(), source=str(path))

    def load_jsonl_bytes(
        self, data: bytes, source: str = "fixtures", *, replace: bool = False
    ) -> dict[str, int]:
        def parsed() -> Iterator[tuple[str, Any, bytes | None]]:
            for number, line in enumerate(data.splitlines(), start=1):
                if not line.strip():
                    continue
                where = f"{source}:{number}"
                try:
                    yield where, json.loads(line), line
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise FixtureError(f"{where}: not a JSON object ({exc})") from exc

        return self._load(parsed(), replace)

    def load(self, objects: Iterable[dict[str, Any]], *, replace: bool = False) -> dict[str, int]:
        """Insert or replace (by id) Stripe objects, or all objects with `replace`; returns how
        many of each type were loaded. A batch with an invalid object changes nothing."""
        numbered = ((f"object #{i}", obj, None) for i, obj in enumerate(objects, start=1))
        return self._load(numbered, replace)

    def _load(
        self, objects: Iterable[tuple[str, Any, bytes | None]], replace: bool
    ) -> dict[str, int]:
        # Validate the whole batch before touching the store, keeping only bytes per object.
        # The last version of an id in one batch wins, at the place of its first appearance.
        prepared: dict[str, _Loaded] = {}
        for where, obj, raw in objects:
            for loaded_object in _prepare(where, obj, raw):
                prepared[loaded_object.id] = loaded_object
        loaded: Counter[str] = Counter()
        with self._lock:
            if replace:
                self._clear()
            fresh: dict[str, list[_Record]] = {}
            for item in prepared.values():
                record = self._store(item)
                if item.full_lines is None:
                    self._full_lines.pop(record.id, None)
                else:
                    self._full_lines[record.id] = item.full_lines
                if record.type in self._indexes:
                    fresh.setdefault(record.type, []).append(record)
                loaded[record.type] += 1
            for object_type, records in fresh.items():
                self._indexes[object_type].add_many(records)
            if "tax_id" in fresh:
                self._tax_ids_by_customer = None
        return dict(loaded)

    def _store(self, item: _Loaded) -> _Record:
        """Insert or replace one object; the caller adds new records to their index."""
        old = self._by_id.get(item.id)
        if old is not None and old.type in self._indexes:
            self._indexes[old.type].remove(old)
        if old is not None:
            seq = old.seq  # a replaced object keeps its place among equal `created`
        else:
            seq = self._next_seq
            self._next_seq += 1
        record = _Record(item.id, item.type, item.created, seq, item.raw, item.fields)
        self._by_id[record.id] = record
        return record

    def get(self, object_id: str) -> dict[str, Any] | None:
        """A stored object as the API would return it (without expansions)."""
        with self._lock:
            record = self._by_id.get(object_id)
        return json.loads(record.raw) if record else None

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "objects": {t: len(index) for t, index in self._indexes.items()},
                "total": len(self._by_id),
                "examined": self.examined,
            }

    # -- HTTP ------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response | None:
        if request.path.startswith("/_sandbox/stripe/"):
            return self._control(request)
        if not request.path.startswith("/v1/"):
            return None
        try:
            _authenticate(request)
            return self._route(request)
        except StripeApiError as exc:
            return exc.response()

    def _control(self, request: Request) -> Response | None:
        name = request.path.removeprefix("/_sandbox/stripe/").rstrip("/")
        if (request.method, name) == ("POST", "fixtures"):
            replace = dict(request.query).get("replace", "").lower() in ("1", "true", "yes")
            try:
                loaded = self.load_jsonl_bytes(request.body, "request body", replace=replace)
            except FixtureError as exc:
                return StripeApiError(400, f"Cannot load Stripe fixtures: {exc}").response()
            return Response.json(200, {"loaded": loaded, "total": sum(loaded.values())})
        if (request.method, name) == ("GET", "stats"):
            return Response.json(200, self.stats())
        return None

    def _route(self, request: Request) -> Response:
        parts = [unquote(p) for p in request.path.removeprefix("/v1/").strip("/").split("/")]
        if request.method == "GET" and parts and parts[0] in RESOURCES:
            resource = RESOURCES[parts[0]]
            if len(parts) == 1:
                return self._list(request, resource)
            if len(parts) == 2:
                return self._retrieve(request, resource, parts[1])
            if len(parts) == 3 and (parts[0], parts[2]) in _SUBLISTS:
                return self._sublist(request, resource, parts[1], parts[2])
        raise StripeApiError(404, f"Unrecognized request URL ({request.method}: {request.path}).")

    # -- list ------------------------------------------------------------------------------

    def _list(self, request: Request, resource: Resource) -> Response:
        params = _parse_list_params(request.query, resource)
        object_type = resource.object_type
        if object_type == "event":
            retained = self.clock.now() - EVENT_RETENTION_SECONDS
            params.lowest = retained if params.lowest is None else max(params.lowest, retained)
        keep = _predicate(params)
        with self._lock:
            index = self._indexes[object_type]
            start, end = index.span(params.lowest, params.highest)
            backwards = False
            if params.starting_after is not None:
                cursor = self._cursor(object_type, params.starting_after, "starting_after")
                start = max(start, index.position(cursor) + 1)
            elif params.ending_before is not None:
                cursor = self._cursor(object_type, params.ending_before, "ending_before")
                end = min(end, index.position(cursor))
                backwards = True
            page, has_more, examined = _window(
                index.records, start, end, params.limit, keep, backwards
            )
            self.examined += examined
            items = self._render([r.raw for r in page], params.expand, on_list=True)
        return _list_response(items, has_more, f"/v1/{request.path.split('/')[2]}")

    def _cursor(self, object_type: str, object_id: str, param: str) -> _Record:
        record = self._by_id.get(object_id)
        if record is None or record.type != object_type:
            raise _no_such(object_type, object_id, param, 400)
        return record

    def _sublist(self, request: Request, resource: Resource, parent_id: str, name: str) -> Response:
        params = _parse_list_params(request.query, None)
        url = f"/v1/{request.path.split('/')[2]}/{parent_id}/{name}"
        with self._lock:
            parent = self._find(resource.object_type, parent_id)
            if name == "tax_ids":
                items = self._tax_ids_of(parent.id)
            else:
                items = self._full_lines.get(parent.id)
                if items is None:
                    items = (json.loads(parent.raw).get("lines") or {}).get("data") or []
        positions = {item.get("id"): i for i, item in enumerate(items)}
        start, end, backwards = 0, len(items), False
        for param, cursor in (
            ("starting_after", params.starting_after),
            ("ending_before", params.ending_before),
        ):
            if cursor is None:
                continue
            if cursor not in positions:
                raise _no_such(_SUBLIST_ITEM[name], cursor, param, 400)
            if param == "starting_after":
                start = positions[cursor] + 1
            else:
                end, backwards = positions[cursor], True
        page, has_more, _ = _window(items, start, end, params.limit, None, backwards)
        rendered = self._render([_serialize(item) for item in page], params.expand, on_list=True)
        return _list_response(rendered, has_more, url)

    def _tax_ids_of(self, customer_id: str) -> list[dict[str, Any]]:
        if self._tax_ids_by_customer is None:
            by_customer: dict[str, list[_Record]] = {}
            for record in self._indexes["tax_id"].records:
                by_customer.setdefault(record.fields.get("customer"), []).append(record)
            self._tax_ids_by_customer = by_customer
        return [json.loads(r.raw) for r in self._tax_ids_by_customer.get(customer_id, [])]

    # -- retrieve and expand ---------------------------------------------------------------

    def _retrieve(self, request: Request, resource: Resource, object_id: str) -> Response:
        expand: list[str] = []
        for key, value in request.query:
            if _is_expand(key):
                expand.append(value)
            else:
                raise _unknown_param(key)
        with self._lock:
            record = self._find(resource.object_type, object_id)
            (body,) = self._render([record.raw], expand, on_list=False)
        return Response(200, body)

    def _find(self, object_type: str, object_id: str) -> _Record:
        record = self._by_id.get(object_id)
        if record is None or record.type != object_type:
            raise _no_such(object_type, object_id, "id", 404)
        if object_type == "event" and record.created < (self.clock.now() - EVENT_RETENTION_SECONDS):
            raise _no_such(object_type, object_id, "id", 404)
        return record

    def _render(self, raws: list[bytes], expand: list[str], *, on_list: bool) -> list[bytes]:
        """Serialized objects, expanded as asked (only then are they parsed again)."""
        paths: list[tuple[list[str], str]] = []
        for path in dict.fromkeys(expand):  # dedupe, keep order
            segments = path.split(".")
            if on_list:
                if segments[0] != "data" or len(segments) < 2:
                    raise _not_expandable(path)
                segments = segments[1:]
            if len(segments) > MAX_EXPAND_DEPTH:
                raise StripeApiError(
                    400,
                    f"You cannot expand more than {MAX_EXPAND_DEPTH} levels of a property "
                    f"({path}).",
                    param="expand",
                )
            paths.append((segments, path))
        if not paths:
            return raws
        rendered = []
        for raw in raws:
            obj = json.loads(raw)
            for segments, path in paths:
                self._expand(obj, segments, path)
            rendered.append(_serialize(obj))
        return rendered

    def _expand(self, obj: Any, segments: Sequence[str], path: str) -> None:
        if not isinstance(obj, dict):
            return
        name, rest = segments[0], segments[1:]
        if obj.get("object") == "list" and name == "data":
            for item in obj.get("data") or []:
                if rest:
                    self._expand(item, rest, path)
            return
        if name in _INCLUDABLE.get(obj.get("object", ""), ()):
            obj[name] = self._includable(obj, name)
        elif name not in obj:
            raise _not_expandable(path)
        value = obj[name]
        if isinstance(value, str):
            record = self._by_id.get(value)
            # A reference to an object the sandbox does not hold stays an id.
            if record is not None:
                obj[name] = value = json.loads(record.raw)
        elif value is not None and not isinstance(value, dict):
            raise _not_expandable(path)
        if rest:
            self._expand(value, rest, path)

    def _includable(self, obj: dict[str, Any], name: str) -> dict[str, Any]:
        # Only customer.tax_ids today; Stripe embeds the first 10 like any sub-list.
        tax_ids = self._tax_ids_of(obj["id"])
        return {
            "object": "list",
            "data": tax_ids[:EMBEDDED_LINES],
            "has_more": len(tax_ids) > EMBEDDED_LINES,
            "url": f"/v1/customers/{obj['id']}/tax_ids",
        }


@dataclass(slots=True)
class _Loaded:
    """A validated fixture object, reduced to what the store keeps."""

    id: str
    type: str
    created: int
    raw: bytes
    fields: dict[str, Any]
    full_lines: list[dict[str, Any]] | None


def _prepare(where: str, obj: Any, raw: bytes | None) -> list[_Loaded]:
    """Validate one fixture object; split out embedded tax ids and over-long line lists.
    `raw` is the object's JSON as received, reused when the object is stored unchanged."""
    if not isinstance(obj, dict):
        raise FixtureError(f"{where}: expected a Stripe object (JSON object), got {obj!r:.80}")
    object_id, object_type = obj.get("id"), obj.get("object")
    if not isinstance(object_id, str) or not object_id:
        raise FixtureError(f"{where}: missing string 'id'")
    if not isinstance(object_type, str) or not object_type:
        raise FixtureError(f"{where} ({object_id}): missing string 'object'")
    created = obj.get("created", 0)
    if isinstance(created, bool) or not isinstance(created, int):
        raise FixtureError(
            f"{where} ({object_id}): 'created' must be integer unix seconds, got {created!r}"
        )
    if object_type in LISTED_TYPES and "created" not in obj:
        raise FixtureError(f"{where} ({object_id}): a {object_type} needs 'created'")
    extra: list[_Loaded] = []
    if object_type == "customer" and "tax_ids" in obj:
        # Includable field: stored as tax_id objects, rebuilt only when expanded.
        obj = dict(obj)
        tax_ids = obj.pop("tax_ids")
        raw = None
        for tax_id in (tax_ids or {}).get("data") or []:
            extra.extend(_prepare(where, {"customer": object_id, **tax_id}, None))
    full_lines = None
    lines = obj.get("lines")
    if object_type in ("invoice", "credit_note") and isinstance(lines, dict):
        data = lines.get("data") or []
        if len(data) > EMBEDDED_LINES:
            full_lines = data
            obj = {**obj, "lines": {**lines, "data": data[:EMBEDDED_LINES], "has_more": True}}
            raw = None
    fields = {name: _ref_id(obj.get(name)) for name in _FILTER_FIELDS.get(object_type, ())}
    loaded = _Loaded(object_id, object_type, created, raw or _serialize(obj), fields, full_lines)
    return [loaded, *extra]


def _not_expandable(path: str) -> StripeApiError:
    return StripeApiError(400, f"This property cannot be expanded ({path}).", param="expand")


def _list_response(items: list[bytes], has_more: bool, url: str) -> Response:
    body = b"".join(
        (
            b'{"object":"list","data":[',
            b",".join(items),
            b'],"has_more":',
            b"true" if has_more else b"false",
            b',"url":',
            _serialize(url),
            b"}",
        )
    )
    return Response(200, body)


def _window(
    items: Sequence[T],
    start: int,
    end: int,
    limit: int,
    keep: Callable[[T], bool] | None,
    backwards: bool,
) -> tuple[list[T], bool, int]:
    """Up to `limit` kept items of items[start:end], taken from the front (or, for
    `ending_before`, from the back: the page just newer than the cursor), whether more kept
    items remain beyond the page, and how many items were examined."""
    if keep is None:
        has_more = end - start > limit
        if backwards:
            page = list(items[max(start, end - limit) : end])
        else:
            page = list(items[start : min(end, start + limit)])
        return page, has_more, len(page)
    page: list[T] = []
    examined = 0
    positions = range(end - 1, start - 1, -1) if backwards else range(start, end)
    for i in positions:
        examined += 1
        if keep(items[i]):
            if len(page) == limit:
                return (page[::-1] if backwards else page), True, examined
            page.append(items[i])
    return (page[::-1] if backwards else page), False, examined


def _predicate(params: _ListParams) -> Callable[[_Record], bool] | None:
    checks: list[Callable[[_Record], bool]] = []
    for name, wanted in params.equals.items():
        checks.append(lambda r, name=name, wanted=wanted: r.fields.get(name) == wanted)
    if params.event_type is not None:
        pattern = params.event_type
        if "*" in pattern:
            checks.append(lambda r: fnmatchcase(str(r.fields.get("type")), pattern))
        else:
            checks.append(lambda r: r.fields.get("type") == pattern)
    if params.event_types:
        allowed = set(params.event_types)
        checks.append(lambda r: r.fields.get("type") in allowed)
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    return lambda r: all(check(r) for check in checks)


def _is_expand(key: str) -> bool:
    """`expand`, `expand[]` or `expand[3]`: the SDK sends the indexed form."""
    match = _LIST_KEY.fullmatch(key)
    return key == "expand" or (match is not None and match.group(1) == "expand")


def _parse_int(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise StripeApiError(
            400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=key
        ) from None


def _parse_list_params(query: list[tuple[str, str]], resource: Resource | None) -> _ListParams:
    """Stripe's list parameters from the form-encoded query (`resource=None`: a sub-list,
    which only pages)."""
    params = _ListParams()
    filters = resource.filters if resource else frozenset()
    is_events = resource is not None and resource.object_type == "event"
    for key, value in query:
        list_key = _LIST_KEY.fullmatch(key)
        created_key = _CREATED_KEY.fullmatch(key)
        if key == "limit":
            params.limit = _parse_int(key, value)
            if not 1 <= params.limit <= MAX_LIMIT:
                bound = (
                    f"less than or equal to {MAX_LIMIT}"
                    if params.limit > 1
                    else ("greater than or equal to 1")
                )
                raise StripeApiError(
                    400,
                    f"This value must be {bound}.",
                    code="parameter_invalid_integer",
                    param="limit",
                )
        elif key in ("starting_after", "ending_before") and value:
            setattr(params, key, value)
        elif _is_expand(key):
            params.expand.append(value)
        elif resource is None:
            raise _unknown_param(key)
        elif key == "created" or created_key:
            op = created_key.group(1) if created_key else "eq"
            _narrow_created(params, op, _parse_int(key, value))
        elif key in filters:
            params.equals[key] = value
        elif is_events and key == "type":
            params.event_type = value
        elif is_events and list_key and list_key.group(1) == "types":
            params.event_types.append(value)
        else:
            raise _unknown_param(key)
    if params.starting_after is not None and params.ending_before is not None:
        raise StripeApiError(
            400,
            "You may only specify one of these parameters: ending_before, starting_after.",
            param="starting_after",
        )
    if params.event_type is not None and params.event_types:
        raise StripeApiError(
            400, "You may only specify one of these parameters: type, types.", param="type"
        )
    return params


def _narrow_created(params: _ListParams, op: str, value: int) -> None:
    lowest = {"eq": value, "gte": value, "gt": value + 1}.get(op)
    highest = {"eq": value, "lte": value, "lt": value - 1}.get(op)
    if lowest is not None:
        params.lowest = lowest if params.lowest is None else max(params.lowest, lowest)
    if highest is not None:
        params.highest = highest if params.highest is None else min(params.highest, highest)


def _authenticate(request: Request) -> None:
    header = request.header("Authorization") or ""
    scheme, _, credential = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            credential = base64.b64decode(credential).decode().partition(":")[0]
        except (ValueError, UnicodeDecodeError):
            credential = ""
    elif scheme.lower() != "bearer":
        credential = ""
    if not credential:
        raise StripeApiError(
            401,
            "You did not provide an API key. Send it as 'Authorization: Bearer sk_test_...'.",
            type="authentication_error",
        )
    if not credential.startswith(("sk_test_", "rk_test_")):
        # Never echo the key back: it may be a live secret sent here by mistake.
        raise StripeApiError(
            401,
            "Invalid API Key provided: the sandbox accepts only test keys "
            "(sk_test_... or rk_test_...).",
            type="authentication_error",
        )
