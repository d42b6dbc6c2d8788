"""deploy/ for real: the systemd units' commands against a throw-away PostgreSQL, and the
Dockerfile, its entry script and docker-compose.yaml checked without a Docker daemon.

The end-to-end test starts exactly what the unit files say (ExecStartPre, then ExecStart, with
their Environment= lines), with /opt/invoicesync read as this checkout and /var/lib/invoicesync as
a temporary folder, points the pipeline at the sandbox, launches `stripe_sync_job` for one seeded
day through the webserver's GraphQL API (as the UI does) and waits for the daemon to run it.
PostgreSQL refuses to run as root, so when the tests run as root its server runs as the
`postgres` OS user.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
import yaml

from invoicesync_dagster.sandbox.seed import day_start

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
UNITS = {
    name: DEPLOY / "systemd" / f"invoicesync-{name}.service" for name in ("webserver", "daemon")
}
VENV_BIN = Path(sys.executable).parent
# Where the units and the image install the checkout, and where the service keeps its state.
INSTALL_DIR = "/opt/invoicesync"
STATE_DIR = "/var/lib/invoicesync"
PG_VERSIONS = Path("/usr/lib/postgresql")
PG_INSTALL_HINT = "apt-get install -y postgresql"
PG_ENV = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD")
DAY = date(2025, 6, 10)
DEADLINE_S = 120


# ------------------------------------------------------------------------------------------
# Reading the deployment files
# ------------------------------------------------------------------------------------------


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file as section → key → values (keys like Environment= repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"{path.name}:{number}: keep each setting on one line"
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"{path.name}:{number}: setting outside a [Section]"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def service(name: str) -> dict[str, list[str]]:
    return read_unit(UNITS[name])["Service"]


def one(settings: dict[str, list[str]], key: str) -> str:
    values = settings.get(key, [])
    assert len(values) == 1, f"expected exactly one {key}=, found {values}"
    return values[0]


def relocate(text: str, state_dir: Path) -> str:
    """A unit's path as on this machine: the checkout for /opt/invoicesync, a temporary folder
    for /var/lib/invoicesync."""
    return text.replace(INSTALL_DIR, str(REPO)).replace(STATE_DIR, str(state_dir))


def unit_command(line: str, state_dir: Path, port: int | None = None) -> list[str]:
    """An Exec*= line as argv, relocated, with the `-p` port replaced when given."""
    argv = shlex.split(relocate(line.lstrip("-+!@:"), state_dir))
    if port is not None:
        at = argv.index("-p")
        argv[at + 1] = str(port)
    return argv


def unit_environment(settings: dict[str, list[str]], state_dir: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in settings.get("Environment", []):
        for assignment in shlex.split(line):
            name, _, value = assignment.partition("=")
            env[name] = relocate(value, state_dir)
    return env


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def dockerfile(keyword: str) -> list[str]:
    return [arguments for found, arguments in dockerfile_instructions() if found == keyword]


def pyproject() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def pin(requirements: list[str], package: str) -> str:
    found = [r for r in requirements if re.match(rf"{re.escape(package)}\s*==", r)]
    assert len(found) == 1, f"{package} is not pinned exactly once in {requirements}"
    return found[0].split("==")[1].strip()


# ------------------------------------------------------------------------------------------
# Static checks
# ------------------------------------------------------------------------------------------


def test_deploy_instance_settings_are_the_repos_plus_postgres_from_env() -> None:
    local = yaml.safe_load((REPO / "dagster.yaml").read_text())
    deployed = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    storage = deployed.pop("storage")
    assert deployed == local, "deploy/dagster.yaml must keep every setting of dagster.yaml"
    assert {"key": "invoicesync/duckdb", "value": "writer", "limit": 1} in deployed["concurrency"][
        "runs"
    ]["tag_concurrency_limits"]
    database = storage["postgres"]["postgres_db"]
    assert database == {
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "port": {"env": "DAGSTER_PG_PORT"},
        "username": {"env": "DAGSTER_PG_USER"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "db_name": {"env": "DAGSTER_PG_DB"},
        "scheme": "postgresql+psycopg2",  # the driver dagster-postgres depends on
    }


def test_postgres_extra_is_dagsters_storage_on_the_same_release_train() -> None:
    project = pyproject()["project"]
    extras = project["optional-dependencies"]
    core = pin(project["dependencies"], "dagster")
    major, minor, patch = (int(part) for part in core.split("."))
    expected = f"0.{minor + 16}.{patch}"
    assert major == 1
    assert pin(extras["postgres"], "dagster-postgres") == expected
    assert pin(extras["dev"], "dagster-postgres") == expected  # CI tests deploy/ with it


def test_no_secret_values_in_deploy_files() -> None:
    secret = re.compile(r"(?i)(password|secret|token|api_key)\w*\s*[:=]\s*(\S+)")
    for path in DEPLOY.rglob("*"):
        if not path.is_file():
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.lstrip().startswith("#"):
                continue
            assert not re.search(r"sk_(live|test)_\w+", line), f"{path}:{number}"
            for match in secret.finditer(line):
                value = match.group(2)
                assert value.startswith("${"), (
                    f"{path.relative_to(REPO)}:{number} holds a secret value; take it from "
                    "the environment"
                )


def test_systemd_units_run_the_venvs_dagster_as_the_service_user() -> None:
    for name, path in UNITS.items():
        settings = service(name)
        assert one(settings, "User") == "invoicesync"
        assert one(settings, "WorkingDirectory") == INSTALL_DIR
        assert one(settings, "EnvironmentFile") == "/etc/invoicesync/env"
        assert one(settings, "Restart") == "on-failure"
        argv = shlex.split(one(settings, "ExecStart"))
        assert Path(argv[0]).parent == Path(INSTALL_DIR, ".venv", "bin"), path.name
        assert (VENV_BIN / Path(argv[0]).name).exists(), f"{argv[0]} is not installed in a venv"
        assert argv[argv.index("-w") + 1] == f"{INSTALL_DIR}/workspace.yaml"
        env = unit_environment(settings, Path(STATE_DIR))
        assert env["DAGSTER_HOME"].startswith(STATE_DIR)
        assert env["INVOICESYNC_HOME"].startswith(STATE_DIR)
        assert read_unit(path)["Install"]["WantedBy"] == ["multi-user.target"]
    webserver = shlex.split(one(service("webserver"), "ExecStart"))
    assert webserver[webserver.index("-h") + 1] == "127.0.0.1"  # behind a reverse proxy
    assert shlex.split(one(service("daemon"), "ExecStart"))[1] == "run"


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: apt-get install -y systemd"
    # verify checks that the commands exist, so it reads the units as installed on this machine.
    for path in UNITS.values():
        (tmp_path / path.name).write_text(relocate(path.read_text(), tmp_path / "state"))
    done = subprocess.run(
        [analyze, "verify", "--man=no", *sorted(str(p) for p in tmp_path.glob("*.service"))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Unknown or malformed settings are only warnings (exit 0): any output is a failure here.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_dockerfile_installs_the_project_with_postgres_as_a_non_root_user() -> None:
    assert dockerfile("FROM") == ["python:3.11-slim"]
    workdir = one({"WORKDIR": dockerfile("WORKDIR")}, "WORKDIR")
    assert workdir == INSTALL_DIR  # the layout the systemd units use
    ignored = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "!"))
    ]
    assert ".env" in ignored
    for arguments in dockerfile("COPY"):
        *sources, _destination = [a for a in shlex.split(arguments) if not a.startswith("--")]
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: no such file in the build context"
            assert not any(fnmatch(source, pattern) for pattern in ignored), source
    installs = [run for run in dockerfile("RUN") if "pip install" in run]
    assert len(installs) == 1
    # What `pip install .` reads must be in the image before that RUN.
    steps = dockerfile_instructions()
    before_install = steps[: steps.index(("RUN", installs[0]))]
    copied = {
        source
        for keyword, arguments in before_install
        if keyword == "COPY"
        for source in shlex.split(arguments)[:-1]
    }
    project = pyproject()
    find = project["tool"]["setuptools"]["packages"]["find"]
    package_dirs = {
        p.name
        for p in REPO.iterdir()
        if any(fnmatch(p.name, i) for i in find["include"])
        and not any(fnmatch(p.name, x) for x in find.get("exclude", []))
    }
    assert {"pyproject.toml", project["project"]["readme"], *package_dirs} <= copied
    words = shlex.split(installs[0])
    assert ".[postgres]" in words
    webserver = [w for w in words if w.startswith("dagster-webserver")]
    dev = pyproject()["project"]["optional-dependencies"]["dev"]
    assert webserver == [f"dagster-webserver=={pin(dev, 'dagster-webserver')}"]
    assert f"PATH={INSTALL_DIR}/.venv/bin:$PATH" in " ".join(dockerfile("ENV"))
    assert "python -m venv .venv" in installs[0]

    user = dockerfile("USER")
    assert user == ["invoicesync"]
    keywords = [keyword for keyword, _ in dockerfile_instructions()]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    env = dict(
        word.split("=", 1) for arguments in dockerfile("ENV") for word in shlex.split(arguments)
    )
    (volume,) = dockerfile("VOLUME")
    assert env["DAGSTER_HOME"].startswith(volume + "/")
    assert env["INVOICESYNC_HOME"].startswith(volume + "/")
    (entrypoint,) = (json.loads(arguments) for arguments in dockerfile("ENTRYPOINT"))
    assert entrypoint == [f"{INSTALL_DIR}/deploy/entrypoint.sh"]
    (command,) = (json.loads(arguments) for arguments in dockerfile("CMD"))
    assert command == ["webserver-and-daemon"]


def test_entry_script_names_commands_the_venv_has() -> None:
    script = DEPLOY / "entrypoint.sh"
    assert os.access(script, os.X_OK), "deploy/entrypoint.sh must be executable"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    for command in ("dagster-webserver", "dagster-daemon", "dagster"):
        assert re.search(rf"\b{command} ", text)
        assert (VENV_BIN / command).exists(), f"{command} is not installed in the venv"


# Stand-ins for the venv's commands: each logs its arguments; the one named by $EXITS_FIRST
# exits with status 3 (once $PEER is up, when there is one), the others run until SIGTERM.
STUB = """#!/usr/bin/env bash
echo "NAME $*" >> "$LOG"
if [ "$EXITS_FIRST" = NAME ]; then
  if [ -n "$PEER" ]; then until grep -q "^$PEER ready" "$LOG"; do sleep 0.05; done; fi
  exit 3
fi
trap 'kill %1; echo "NAME stopped" >> "$LOG"; exit 0' TERM
echo "NAME ready" >> "$LOG"
sleep 60 & wait
"""
ENTRY_COMMANDS = {
    "dagster-webserver": "dagster-webserver -w workspace.yaml -h 0.0.0.0 -p 3000",
    "dagster-daemon": "dagster-daemon run -w workspace.yaml",
    "dagster": "dagster dev -w workspace.yaml -h 0.0.0.0 -p 3000",
}


def run_entry_script(
    tmp_path: Path, role: list[str], exits_first: str, peer: str = ""
) -> list[str]:
    """deploy/entrypoint.sh with stand-ins on PATH; returns the log (and checks exit status 3)."""
    bin_dir = tmp_path / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        for name in ENTRY_COMMANDS:
            (bin_dir / name).write_text(STUB.replace("NAME", name))
            (bin_dir / name).chmod(0o755)
    log = tmp_path / "calls.log"
    log.unlink(missing_ok=True)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "LOG": str(log),
        "EXITS_FIRST": exits_first,
        "PEER": peer,
        "DAGSTER_HOME": str(tmp_path / "state" / "dagster"),
        "INVOICESYNC_HOME": str(tmp_path / "state" / "data"),
    }
    script = str(DEPLOY / "entrypoint.sh")
    done = subprocess.run([script, *role], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 3, done.stderr
    return log.read_text().splitlines()


@pytest.mark.parametrize(
    ("exits_first", "keeps_running"),
    [("dagster-webserver", "dagster-daemon"), ("dagster-daemon", "dagster-webserver")],
)
def test_entry_script_runs_both_and_stops_with_the_first_to_exit(
    tmp_path: Path, exits_first: str, keeps_running: str
) -> None:
    calls = run_entry_script(tmp_path, [], exits_first, peer=keeps_running)
    assert ENTRY_COMMANDS["dagster-daemon"] in calls
    assert ENTRY_COMMANDS["dagster-webserver"] in calls
    assert f"{keeps_running} stopped" in calls  # the container stops, its restart policy acts
    installed = tmp_path / "state" / "dagster" / "dagster.yaml"
    assert installed.read_text() == (DEPLOY / "dagster.yaml").read_text()


def test_entry_script_single_roles(tmp_path: Path) -> None:
    installed = tmp_path / "state" / "dagster" / "dagster.yaml"
    for role, command in (("webserver", "dagster-webserver"), ("daemon", "dagster-daemon")):
        assert run_entry_script(tmp_path, [role], command) == [ENTRY_COMMANDS[command]]
        assert installed.read_text() == (DEPLOY / "dagster.yaml").read_text()
    # `dev`: `dagster dev` on SQLite, with the repository's (local) instance settings.
    assert run_entry_script(tmp_path, ["dev"], "dagster") == [ENTRY_COMMANDS["dagster"]]
    assert installed.read_text() == (REPO / "dagster.yaml").read_text()
    # Anything else runs as a command, e.g. `docker run ... invoicesync anaf login`.
    assert run_entry_script(tmp_path, ["dagster", "--version"], "dagster") == ["dagster --version"]


def test_compose_runs_one_daemon_and_keeps_the_password_out() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
    services = compose["services"]
    roles = {name: s.get("command") for name, s in services.items()}
    assert [name for name, cmd in roles.items() if cmd == ["daemon"]] == ["daemon"]
    assert roles["webserver"] == ["webserver"]
    entry = (DEPLOY / "entrypoint.sh").read_text()
    for name in ("webserver", "daemon"):
        spec = services[name]
        assert "deploy" not in spec and "scale" not in spec  # never more than one daemon
        assert (REPO / spec["build"]["dockerfile"]).exists()
        assert (DEPLOY / spec["build"]["context"]).resolve() == REPO
        assert re.search(rf"^\s+{name}\)", entry, re.MULTILINE), f"no {name} role"
        assert spec["volumes"] == [f"invoicesync:{STATE_DIR}"]
        assert set(spec["environment"]) == {*PG_ENV, "DAGSTER_PG_DB"} - {"DAGSTER_PG_PASSWORD"}
        assert spec["env_file"] == "../.env"  # DAGSTER_PG_PASSWORD and the settings
    assert services["webserver"]["ports"] == ["127.0.0.1:3000:3000"]
    password = services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert password.startswith("${DAGSTER_PG_PASSWORD:?")


# ------------------------------------------------------------------------------------------
# End to end: PostgreSQL, the sandbox, the units' webserver and daemon, one run
# ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def postgres_bin() -> Path:
    found = sorted(PG_VERSIONS.glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    assert found, (
        f"PostgreSQL server binaries are missing (looked in {PG_VERSIONS}/*/bin): {PG_INSTALL_HINT}"
    )
    return found[-1].parent


class ProcessGroups:
    """Background processes, each in its own session so that stopping one stops its children
    (code servers, run workers); all are stopped together, which keeps teardown short."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[tuple[subprocess.Popen[bytes], signal.Signals]] = []
        self.logs: list[Path] = []
        self.servers: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self,
        name: str,
        argv: list[str],
        stop: signal.Signals = signal.SIGTERM,
        server: bool = True,
        **options: Any,
    ) -> subprocess.Popen[bytes]:
        """Start `argv`; a server is expected to run until stopped, anything else to exit 0."""
        log = self.log_dir / f"{name}.log"
        self.logs.append(log)
        with log.open("ab") as output:
            process = subprocess.Popen(
                argv, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, **options
            )
        self.started.append((process, stop))
        if server:
            self.servers.append((name, process))
        return process

    def stop_all(self) -> None:
        for process, stop in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, stop)
        for process, _ in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
            # Whatever outlived its leader (or ignored the signal) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def wait_until(self, what: str, ready: Callable[[], bool], deadline: float) -> None:
        """Poll `ready()` until it is true; on timeout fail with the processes' logs."""
        while time.monotonic() < deadline:
            if ready():
                return
            # A server that died will not become ready: fail now, with the logs.
            for name, process in self.servers:
                if process.poll() is not None:
                    pytest.fail(f"{name} exited ({process.returncode})\n{self.tails()}")
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {what}\n{self.tails()}")

    def tails(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in self.logs)


@contextlib.contextmanager
def background(log_dir: Path) -> Iterator[ProcessGroups]:
    groups = ProcessGroups(log_dir)
    try:
        yield groups
    finally:
        groups.stop_all()


def start_postgres(
    groups: ProcessGroups, root: Path, password: str, deadline: float
) -> dict[str, str]:
    """A throw-away PostgreSQL on a free loopback port in `root`, provisioned as the README says
    (a login role `invoicesync` with a password, owning database `invoicesync`).
    Returns the DAGSTER_PG_* settings."""
    bin_dir = postgres_bin()
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail(f"no `postgres` OS user to run PostgreSQL as (not root): {PG_INSTALL_HINT}")
        os.chown(root, account.pw_uid, account.pw_gid)
        as_postgres = [
            "setpriv",
            f"--reuid={account.pw_uid}",
            f"--regid={account.pw_gid}",
            "--init-groups",
        ]
    local: dict[str, Any] = {
        "cwd": root,
        "env": {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"},
        "capture_output": True,
        "timeout": 60,
    }
    data = root / "data"
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--no-sync"]
    auth = ["--auth-local=trust", "--auth-host=scram-sha-256"]
    subprocess.run([*as_postgres, *initdb, *auth], check=True, **local)
    port = free_port()
    server = groups.start(
        "postgres",
        [
            *as_postgres,
            *(str(bin_dir / "postgres"), "-D", str(data), "-p", str(port)),
            *("-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={root}"),
            *("-c", "fsync=off"),
        ],
        # PostgreSQL's fast shutdown (SIGTERM would wait for the clients to leave).
        stop=signal.SIGINT,
        cwd=root,
        env=local["env"],
    )
    superuser = ["-h", str(root), "-p", str(port), "-U", "postgres"]

    def accepting() -> bool:
        ready = subprocess.run([bin_dir / "pg_isready", "-q", *superuser], **local)
        return server.poll() is None and ready.returncode == 0

    groups.wait_until("PostgreSQL", accepting, deadline)
    for command in (
        [bin_dir / "createuser", *superuser, "invoicesync"],
        # What `createuser --pwprompt` does, without a terminal.
        [bin_dir / "psql", *superuser, "-c", f"ALTER ROLE invoicesync PASSWORD '{password}'"],
        [bin_dir / "createdb", *superuser, "--owner", "invoicesync", "invoicesync"],
    ):
        subprocess.run(command, check=True, **local)
    return {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(port),
        "DAGSTER_PG_USER": "invoicesync",
        "DAGSTER_PG_PASSWORD": password,
        "DAGSTER_PG_DB": "invoicesync",
    }


def sandbox_settings(url: str) -> dict[str, str]:
    """What /etc/invoicesync/env would hold: sandbox.dotenv, every service on the sandbox."""
    from dotenv import dotenv_values

    settings = {k: v or "" for k, v in dotenv_values(REPO / "sandbox.dotenv").items()}
    for name in (
        "STRIPE_API_BASE",
        "ANAF_PUBLIC_API_BASE",
        "ANAF_API_BASE",
        "ANAF_OAUTH_BASE",
        "SMARTBILL_API_BASE",
    ):
        settings[name] = url
    settings["BNR_RATES_URL"] = f"{url}/bnr/nbrfxrates.xml"
    return settings


def graphql(base: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    request = {"query": query, "variables": variables or {}}
    answer = httpx.post(f"{base}/graphql", json=request, timeout=30)
    answer.raise_for_status()
    body = answer.json()
    assert "errors" not in body, body
    return body["data"]


LOCATIONS = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }
"""
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""
RUN_STATUS = """
query RunStatus($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status jobName } }
}
"""


def seeded_invoices(fixtures: Path, day: date) -> int:
    start, end = day_start(day), day_start(day + timedelta(days=1))
    objects = (json.loads(line) for line in fixtures.read_text().splitlines())
    return sum(1 for o in objects if o["object"] == "invoice" and start <= o["created"] < end)


@pytest.mark.slow
def test_units_run_the_pipeline_on_postgres_storage(tmp_path: Path) -> None:
    deadline = time.monotonic() + DEADLINE_S
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    base_env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    cli = str(VENV_BIN / "invoicesync")
    # Outside pytest's tmp_path, whose parents the postgres user may not enter.
    pg_root = Path(tempfile.mkdtemp(prefix="invoicesync-pg-"))
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, pg_root, ignore_errors=True)
        groups = cleanup.enter_context(background(tmp_path))
        pg = start_postgres(groups, pg_root, uuid.uuid4().hex, deadline)

        fixtures = state_dir / "sandbox" / "stripe.jsonl"
        fixtures.parent.mkdir()
        subprocess.run(
            [cli, "sandbox", "seed", "--days", "2", "--end-date", str(DAY), "-o", str(fixtures)],
            check=True,
            capture_output=True,
            env=base_env,
            timeout=60,
        )
        port_file = tmp_path / "sandbox.port"
        serve = [cli, "sandbox", "serve", "--port", "0", "--port-file", str(port_file)]
        groups.start("sandbox", [*serve, "--stripe-fixtures", str(fixtures)], env=base_env)
        groups.wait_until("the sandbox", lambda: bool(port_file.exists()), deadline)
        sandbox_url = f"http://127.0.0.1:{port_file.read_text().strip()}"

        web_port = free_port()
        env: dict[str, str] = {}
        for name in ("daemon", "webserver"):
            settings = service(name)
            env = {
                **base_env,
                **unit_environment(settings, state_dir),
                # EnvironmentFile= (/etc/invoicesync/env): the settings and DAGSTER_PG_*.
                **sandbox_settings(sandbox_url),
                **pg,
            }
            for line in settings.get("ExecStartPre", []):
                subprocess.run(unit_command(line, state_dir), check=True, env=env, timeout=30)
            port = web_port if name == "webserver" else None
            groups.start(
                name,
                unit_command(one(settings, "ExecStart"), state_dir, port),
                env=env,
                cwd=relocate(one(settings, "WorkingDirectory"), state_dir),
            )
        dagster_home = Path(env["DAGSTER_HOME"])
        # An operator's command on the shared instance (meanwhile the servers start).
        pool_limit = groups.start(
            "concurrency",
            [str(VENV_BIN / "dagster"), "instance", "concurrency", "set", "stripe_api", "2"],
            server=False,
            cwd=REPO,
            env=env,
        )
        assert (dagster_home / "dagster.yaml").read_text() == (DEPLOY / "dagster.yaml").read_text()

        web = f"http://127.0.0.1:{web_port}"

        def location_loaded() -> bool:
            try:
                entries = graphql(web, LOCATIONS)["workspaceOrError"]["locationEntries"]
            except httpx.TransportError:  # still starting
                return False
            return entries == [{"name": "invoicesync_dagster", "loadStatus": "LOADED"}]

        groups.wait_until("the webserver to load the code location", location_loaded, deadline)
        # What "Materialize" / "Launch run" in the UI sends: the run is queued in Postgres and
        # the daemon (another process) launches it.
        launched = graphql(
            web,
            LAUNCH,
            {
                "params": {
                    "selector": {
                        "repositoryLocationName": "invoicesync_dagster",
                        "repositoryName": "__repository__",
                        "jobName": "stripe_sync_job",
                    },
                    "runConfigData": {},
                    "executionMetadata": {
                        "tags": [{"key": "dagster/partition", "value": str(DAY)}]
                    },
                }
            },
        )["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        status: dict[str, str] = {}

        def finished() -> bool:
            status.update(graphql(web, RUN_STATUS, {"runId": run_id})["runOrError"])
            return status["status"] in ("SUCCESS", "FAILURE", "CANCELED")

        groups.wait_until("the daemon to run it", finished, deadline)
        expected = {"__typename": "Run", "status": "SUCCESS", "jobName": "stripe_sync_job"}
        assert status == expected, groups.tails()

        # Stored in Postgres (not in SQLite files under DAGSTER_HOME).
        def query(sql: str) -> list[str]:
            done = subprocess.run(
                [
                    *(str(postgres_bin() / "psql"), "-At", "-F", " ", "-c", sql),
                    *("-h", pg["DAGSTER_PG_HOST"], "-p", pg["DAGSTER_PG_PORT"]),
                    *("-U", pg["DAGSTER_PG_USER"], "-d", pg["DAGSTER_PG_DB"]),
                ],
                env={**base_env, "PGPASSWORD": pg["DAGSTER_PG_PASSWORD"]},
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            )
            return done.stdout.splitlines()

        assert query(f"SELECT status, pipeline_name FROM runs WHERE run_id = '{run_id}'") == [
            "SUCCESS stripe_sync_job"
        ]
        tags = query(f"SELECT key, value FROM run_tags WHERE run_id = '{run_id}'")
        assert f"dagster/partition {DAY}" in tags
        assert "invoicesync/duckdb writer" in tags  # the one-writer limit applies to it
        assert "SCHEDULER" in query("SELECT daemon_type FROM daemon_heartbeats")
        assert not list(dagster_home.rglob("*.db")), "Dagster fell back to SQLite storage"

        # Pool limits live in the instance too, so they bind every machine that shares it.
        assert pool_limit.wait(timeout=60) == 0, groups.tails()
        limit = "SELECT \"limit\" FROM concurrency_limits WHERE concurrency_key = 'stripe_api'"
        assert query(limit) == ["2"]

    # The run wrote the day's invoices to the warehouse in INVOICESYNC_HOME.
    database = Path(env["INVOICESYNC_HOME"]) / "invoicesync.duckdb"
    with duckdb.connect(str(database), read_only=True) as connection:
        (count,) = connection.execute(  # type: ignore[misc]
            "SELECT count(*) FROM stripe_invoices WHERE created_date = ?", [DAY]
        ).fetchone()
    assert count == seeded_invoices(fixtures, DAY) > 0
