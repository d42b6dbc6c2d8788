"""`make dev`: the sandbox and `dagster dev` on loopback (`python -m
invoicesync_dagster.sandbox.dagster_dev`), and the same stack in a throw-away folder on free
ports for the UI tests (invoicesync_dagster_tests/test_dagster_dev.py) and
scripts/screenshot_ui.py, which refreshes the README's picture of the asset graph.

`boot` seeds Stripe fixtures (or, for `make dev`, reuses the demo's), starts
`invoicesync sandbox serve` as its own process, points every outside service at it, runs
`invoicesync sandbox anaf-login`, then `dagster dev` with a DAGSTER_HOME holding a copy of the
repository's dagster.yaml.

Both servers run in their own process group (setsid): a process started from a script may
inherit SIGINT as ignored (DAGSTER-NOTES §1.8), so `stop()` signals the whole group and ends
with SIGKILL if the group is still there after a grace period.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from dotenv import dotenv_values

from invoicesync_dagster.sandbox.seed import yesterday_in_bucharest

REPO = Path(__file__).resolve().parents[2]
# The virtualenv running us: its `invoicesync` and `dagster` are the ones under test.
BIN = Path(sys.executable).parent
LOCATION = "invoicesync_dagster"
LOOPBACK = "127.0.0.1"
ENSURE_TOOLS = "scripts/ensure-test-tools.sh"
RUNNING = frozenset({"STARTING", "STARTED", "CANCELING"})  # a run process may hold DuckDB
DONE = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
# Every outside service the code location calls: set to the sandbox, so nothing leaves 127.0.0.1.
_BASES = (
    "STRIPE_API_BASE",
    "ANAF_PUBLIC_API_BASE",
    "ANAF_API_BASE",
    "ANAF_OAUTH_BASE",
    "SMARTBILL_API_BASE",
)
_INHERITED_OUT = (*_BASES, "BNR_RATES_URL", "DAGSTER_HOME", "INVOICESYNC_HOME")

T = TypeVar("T")


class BootError(Exception):
    """The sandbox or `dagster dev` did not come up; the message ends with its log."""


class ChromiumMissing(Exception):
    """No headless Chromium on this machine."""


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it; a tiny race is accepted)."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def wait_for(
    what: str, check: Callable[[], T | None], *, timeout: float, interval: float = 0.5
) -> T:
    """Polls `check` until it returns something other than None, or fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True)
class Run:
    run_id: str
    job: str
    status: str
    partition: str | None
    tags: dict[str, str]
    created: float
    started: float | None
    ended: float | None


_RUNS = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter, limit: 1000) {
    __typename
    ... on Runs { results { runId jobName status creationTime startTime endTime
                            tags { key value } } }
    ... on PythonError { message }
  }
}
"""
_WORKSPACE = """
{ workspaceOrError { __typename
    ... on Workspace { locationEntries { name loadStatus
        locationOrLoadError { __typename ... on PythonError { message } } } }
    ... on PythonError { message } } }
"""
_RELOAD = """
mutation Reload($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) {
  __typename } }
"""


@dataclass
class DevStack:
    """A booted sandbox + `dagster dev`; stop it with `stop()` or use it as a context manager."""

    workdir: Path
    env: dict[str, str]
    sandbox_url: str
    ui_url: str
    days: list[date]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    boot_seconds: float = 0.0

    @property
    def dagster_home(self) -> Path:
        return Path(self.env["DAGSTER_HOME"])

    @property
    def invoicesync_home(self) -> Path:
        return Path(self.env["INVOICESYNC_HOME"])

    @property
    def duckdb_path(self) -> Path:
        return self.invoicesync_home / "invoicesync.duckdb"

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(
            f"{self.ui_url}/graphql",
            json={"query": query, "variables": variables or {}},
            timeout=60,
        )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return dict(body["data"])

    def lineage_url(self) -> str:
        """The global asset lineage page with every group expanded (the UI collapses them)."""
        nodes = self.graphql("{ assetNodes { groupName } }")["assetNodes"]
        groups = sorted({node["groupName"] for node in nodes if node["groupName"]})
        # Group ids as the UI writes them into `?expanded=` (ui-core asset-graph/Utils.tsx).
        expanded = ",".join(f"global@global:{group}" for group in groups)
        return f"{self.ui_url}/asset-groups?expanded={quote(expanded, safe='')}"

    def sandbox_get(self, path: str) -> Any:
        response = httpx.get(f"{self.sandbox_url}{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def runs(self, *, job: str | None = None) -> list[Run]:
        run_filter: dict[str, Any] = {"pipelineName": job} if job else {}
        data = self.graphql(_RUNS, {"filter": run_filter})["runsOrError"]
        if data["__typename"] != "Runs":
            raise RuntimeError(f"runs query failed: {data.get('message')}")
        runs = []
        for row in data["results"]:
            tags = {tag["key"]: tag["value"] for tag in row["tags"]}
            runs.append(
                Run(
                    run_id=row["runId"],
                    job=row["jobName"],
                    status=row["status"],
                    partition=tags.get("dagster/partition"),
                    tags=tags,
                    created=row["creationTime"],
                    started=row["startTime"],
                    ended=row["endTime"],
                )
            )
        return runs

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """A command of this virtualenv (`dagster ...`, `invoicesync ...`) against this stack."""
        done = subprocess.run(
            [str(BIN / args[0]), *args[1:]],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(args)}` exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def backfill(self, job: str, first: date, last: date) -> subprocess.CompletedProcess[str]:
        """`dagster job backfill` over [first, last]: queues one run per day for the daemon."""
        return self.cli(
            "dagster",
            "job",
            "backfill",
            "-w",
            str(REPO / "workspace.yaml"),
            "-j",
            job,
            "--from",
            first.isoformat(),
            "--to",
            last.isoformat(),
            "--noprompt",
        )

    def wait_for_runs(self, job: str, count: int, *, timeout: float) -> list[Run]:
        """The job's runs once `count` of them exist and all are finished."""

        def finished() -> list[Run] | None:
            runs = self.runs(job=job)
            done = len(runs) >= count and all(run.status in DONE for run in runs)
            return runs if done else None

        return wait_for(f"{count} finished runs of {job}", finished, timeout=timeout, interval=2)

    def snapshot_warehouse(self, target: Path, *, timeout: float = 300) -> Path:
        """A copy of the DuckDB file taken while no run was writing it.

        Opening the live file, even read-only, would make a run that starts meanwhile fail on
        DuckDB's lock (the status sensor launches runs on its own). A copy is taken between
        runs, and kept only if the same runs, none in progress, are seen before and after it.
        """
        target.parent.mkdir(parents=True, exist_ok=True)

        wal, target_wal = (p.with_name(p.name + ".wal") for p in (self.duckdb_path, target))

        def quiet_copy() -> Path | None:
            before = self._run_states()
            if any(status in RUNNING for status in before.values()):
                return None
            shutil.copyfile(self.duckdb_path, target)
            target_wal.unlink(missing_ok=True)
            if wal.exists():
                shutil.copyfile(wal, target_wal)
            return target if self._run_states() == before else None

        return wait_for("a moment with no run writing DuckDB", quiet_copy, timeout=timeout)

    def _run_states(self) -> dict[str, str]:
        return {run.run_id: run.status for run in self.runs()}

    def stop(self) -> None:
        for process in reversed(self.processes):
            _stop_group(process)
        self.processes.clear()

    def __enter__(self) -> DevStack:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


def boot(
    workdir: Path,
    *,
    days: int = 30,
    invoices_per_day: int = 3,
    charges_per_day: int = 1,
    seed: int = 7,
    timeout: float = 180,
    dagster_home: Path | None = None,
    invoicesync_home: Path | None = None,
    reuse_fixtures: bool = False,
    sandbox_port: int = 0,
    ui_port: int = 0,
) -> DevStack:
    """Seeds `days` days ending yesterday (Bucharest) unless `reuse_fixtures` finds some, starts
    the sandbox and `dagster dev`, and returns once the code location is loaded. Homes default
    to folders in `workdir`, ports to free ones. Stops what it started if that fails."""
    started = time.monotonic()
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    dagster_home = (dagster_home or workdir / "dagster_home").resolve()
    invoicesync_home = (invoicesync_home or workdir / "invoicesync_home").resolve()
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    fixtures = invoicesync_home / "sandbox" / "stripe.jsonl"
    fixtures.parent.mkdir(parents=True, exist_ok=True)
    last = yesterday_in_bucharest()
    seeded = [last - timedelta(days=n) for n in reversed(range(days))]
    reused = reuse_fixtures and fixtures.exists()

    env = {k: v for k, v in os.environ.items() if k not in _INHERITED_OUT}
    env.update({k: v or "" for k, v in dotenv_values(REPO / "sandbox.dotenv").items()})
    env.update(DAGSTER_HOME=str(dagster_home), INVOICESYNC_HOME=str(invoicesync_home))
    stack = DevStack(workdir=workdir, env=env, sandbox_url="", ui_url="", days=seeded)
    try:
        if not reused:
            stack.cli(
                "invoicesync",
                "sandbox",
                "seed",
                "--days",
                str(days),
                "--seed",
                str(seed),
                "--invoices-per-day",
                str(invoices_per_day),
                "--charges-per-day",
                str(charges_per_day),
                "--end-date",
                last.isoformat(),
                "--output",
                str(fixtures),
            )
        port_file = workdir / "sandbox.port"
        port_file.unlink(missing_ok=True)
        sandbox = _start(
            stack,
            "sandbox",
            *("invoicesync", "sandbox", "serve", "--port", str(sandbox_port)),
            *("--port-file", str(port_file)),
            *("--stripe-fixtures", str(fixtures)),
        )

        def listening() -> str | None:
            _alive(sandbox, workdir / "sandbox.log")
            return port_file.read_text().strip() or None if port_file.exists() else None

        port = wait_for("the sandbox to listen", listening, timeout=60, interval=0.1)
        stack.sandbox_url = f"http://{LOOPBACK}:{port}"
        env.update({name: stack.sandbox_url for name in _BASES})
        env["BNR_RATES_URL"] = f"{stack.sandbox_url}/bnr/nbrfxrates.xml"
        stack.cli("invoicesync", "sandbox", "anaf-login")

        stack.ui_url = f"http://{LOOPBACK}:{ui_port or free_port()}"
        dev = _start(
            stack,
            "dagster_dev",
            *("dagster", "dev", "-w", str(REPO / "workspace.yaml"), "-h", LOOPBACK),
            *("-p", stack.ui_url.rsplit(":", 1)[1]),
        )
        _wait_until_loaded(stack, dev, timeout=timeout)
    except BaseException:
        stack.stop()
        raise
    stack.boot_seconds = time.monotonic() - started
    return stack


# Runs argv[1:] with SIGINT and SIGTERM at their defaults: started from a non-interactive
# shell they may be inherited as ignored, and then `dagster dev` cannot be stopped gracefully.
_DEFAULT_SIGNALS_EXEC = (
    "import os, signal, sys\n"
    "for sig in (signal.SIGINT, signal.SIGTERM): signal.signal(sig, signal.SIG_DFL)\n"
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def _start(stack: DevStack, name: str, *command: str) -> subprocess.Popen[bytes]:
    log = open(stack.workdir / f"{name}.log", "wb")  # noqa: SIM115 (the child keeps it open)
    with log:
        process = subprocess.Popen(
            [sys.executable, "-c", _DEFAULT_SIGNALS_EXEC, str(BIN / command[0]), *command[1:]],
            cwd=stack.workdir,
            env=stack.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as one
        )
    stack.processes.append(process)
    return process


def _alive(process: subprocess.Popen[bytes], log: Path) -> bool:
    if process.poll() is not None:
        raise BootError(f"{process.args} exited {process.returncode}:\n{_tail(log)}")
    return True


def _tail(log: Path, lines: int = 40) -> str:
    if not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _wait_until_loaded(stack: DevStack, dev: subprocess.Popen[bytes], *, timeout: float) -> None:
    """Until the webserver answers and the code location is LOADED. A location that fails to
    load (code being edited while we boot) is reloaded every few seconds until `timeout`."""
    log = stack.workdir / "dagster_dev.log"
    last_error = ""
    last_reload = time.monotonic()

    def loaded() -> bool | None:
        nonlocal last_error, last_reload
        _alive(dev, log)
        try:
            data = stack.graphql(_WORKSPACE)["workspaceOrError"]
        except (httpx.HTTPError, RuntimeError):
            return None  # the webserver is not up yet
        for entry in data.get("locationEntries", []):
            if entry["name"] != LOCATION or entry["loadStatus"] != "LOADED":
                continue
            location = entry["locationOrLoadError"] or {}
            if location.get("__typename") == "RepositoryLocation":
                return True
            last_error = location.get("message", str(location))
            if time.monotonic() - last_reload > 5:
                stack.graphql(_RELOAD, {"name": LOCATION})
                last_reload = time.monotonic()
        return None

    try:
        wait_for("the code location to load", loaded, timeout=timeout)
    except TimeoutError as error:
        detail = f"last load error:\n{last_error}" if last_error else _tail(log)
        raise BootError(f"dagster dev at {stack.ui_url}: {error}; {detail}") from None


def _stop_group(process: subprocess.Popen[bytes], grace: float = 15) -> None:
    """SIGINT (dagster dev's graceful stop), then SIGKILL, to the whole group."""
    group = process.pid  # start_new_session: the leader's pid is the group id
    for sig in (signal.SIGINT, signal.SIGKILL):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _group_alive(group):
            process.poll()  # reap the leader
            time.sleep(0.1)
        if not _group_alive(group):
            break
    process.wait(timeout=30)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


# -- headless Chromium ---------------------------------------------------------------------------

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # we run as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Nothing but loopback is reachable: no update checks, sync or component downloads.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise ChromiumMissing(
        f"headless Chromium is not installed: run {ENSURE_TOOLS} (as root it installs "
        "Debian's chromium with apt-get; otherwise it prints the command)"
    )


# Wide enough that the UI draws the lineage as full asset cards (name, checks, partitions);
# narrower windows get minimal boxes with shortened names.
WINDOW = (2400, 1300)


@dataclass(frozen=True)
class Capture:
    png: Path
    dom: str  # the page's DOM as rendered, to check what it shows
    seconds: float


def capture(
    url: str,
    output: Path,
    *,
    width: int = WINDOW[0],
    height: int = WINDOW[1],
    budget_ms: int = 20_000,
    timeout: float = 180,
) -> Capture:
    """Renders `url` in headless Chromium: a PNG screenshot into `output` and the DOM.
    `budget_ms` of virtual time lets the UI fetch its data and lay out the graph first."""
    browser = chromium()
    output = output.resolve()
    output.unlink(missing_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        done = subprocess.run(
            [
                browser,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--virtual-time-budget={budget_ms}",
                f"--screenshot={output}",
                "--dump-dom",
                url,
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    if done.returncode != 0 or not output.exists():
        raise RuntimeError(
            f"chromium rendered no screenshot of {url} (exit {done.returncode}):\n"
            + done.stderr[-3000:]
        )
    return Capture(output, done.stdout, time.monotonic() - started)


# -- PNG reading (stdlib only: enough to tell a rendered page from a blank one) ------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel (8-bit, no palette)


@dataclass(frozen=True)
class PngSummary:
    width: int
    height: int
    colours: int  # distinct pixel values


def png_summary(path: Path) -> PngSummary:
    """Size and number of distinct colours of an 8-bit greyscale/RGB(A) PNG."""
    data = path.read_bytes()
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError(f"{path} is not a PNG")
    chunks = _chunks(data[len(_PNG_SIGNATURE) :])
    width, height, depth, colour_type = struct.unpack(">IIBB", next(chunks)[1][:10])
    if depth != 8 or colour_type not in _CHANNELS:
        raise ValueError(f"{path}: only 8-bit greyscale/RGB(A) PNGs are read (type {colour_type})")
    compressed = b"".join(body for kind, body in chunks if kind == b"IDAT")
    pixel = _CHANNELS[colour_type]
    rows = _unfilter(zlib.decompress(compressed), width * pixel, height, pixel)
    colours: set[bytes] = set()
    for row in rows:
        colours.update(row[i : i + pixel] for i in range(0, len(row), pixel))
    return PngSummary(width, height, len(colours))


def _chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    offset = 0
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        yield kind, data[offset + 8 : offset + 8 + length]
        offset += 12 + length


def _unfilter(raw: bytes, stride: int, height: int, bpp: int) -> list[bytes]:
    """Undoes PNG's per-row filters (None, Sub, Up, Average, Paeth)."""
    rows: list[bytes] = []
    previous = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, row = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                row[i] = (row[i] + row[i - bpp]) & 0xFF
        elif kind == 2:
            row = bytearray((a + b) & 0xFF for a, b in zip(row, previous, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = row[i - bpp] if i >= bpp else 0
                row[i] = (row[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = row[i - bpp] if i >= bpp else 0
                b = previous[i]
                c = previous[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                predictor = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                row[i] = (row[i] + predictor) & 0xFF
        previous = bytes(row)
        rows.append(previous)
    return rows


def main() -> int:
    """`make dev`: the stack on the Makefile's DAGSTER_HOME and INVOICESYNC_HOME, the sandbox on
    SANDBOX_PORT (8765) and the UI on DAGSTER_PORT (3000), until Ctrl-C."""
    # Ctrl-C and a plain `kill` both stop the servers (a shell may start us with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    invoicesync_home = Path(os.environ.get("INVOICESYNC_HOME", ".invoicesync"))
    workdir = invoicesync_home / "dev"
    try:
        stack = boot(
            workdir,
            days=14,
            invoices_per_day=15,
            charges_per_day=5,
            dagster_home=Path(os.environ.get("DAGSTER_HOME", ".dagster_home")),
            invoicesync_home=invoicesync_home,
            reuse_fixtures=True,  # the demo's data, when `make demo` ran first
            sandbox_port=int(os.environ.get("SANDBOX_PORT", "8765")),
            ui_port=int(os.environ.get("DAGSTER_PORT", "3000")),
        )
    except BootError as error:
        print(f"make dev could not start: {error}", file=sys.stderr)
        return 1
    print(f"Dagster UI: {stack.ui_url}   (Ctrl-C to stop)")
    print(f"Sandbox:    {stack.sandbox_url}   logs in {stack.workdir}")
    try:
        while all(process.poll() is None for process in stack.processes):
            time.sleep(1)
        print(f"a server stopped; see the logs in {stack.workdir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
