"""Every command the README shows is run by a test.

The commands in the README's ```bash blocks run here, in the README's order, as a user would
type them (the real `invoicesync`, `duckdb`, `dagster` and `make` of the virtualenv, in
subprocesses), against the sandbox on 127.0.0.1 with two seeded days. Two substitutions keep
them meaningful whatever today is: the example dates 2026-11-01 / 2026-11-30 become the seeded
days, and the year in the example invoice number becomes the documents' year.

A few commands need more than this test can give in a minute (the 14-day demo, a daemon, a
PostgreSQL server): each is run by the test named in ELSEWHERE, and this test checks that that
test exists and runs that command. The server set-up in the Deployment section that needs root,
systemd or Docker (NOT_RUN) is run by no test, and the README says so there. `invoicesync`
commands named anywhere else in the README (prose, the options reference) must be run here or
there too.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import click
import pytest
from dotenv import dotenv_values

from invoicesync_dagster.cli import cli
from invoicesync_dagster.sandbox import seed
from invoicesync_dagster.sandbox.server import SandboxServer

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
TESTS = ROOT / "invoicesync_dagster_tests"
EXAMPLE_FIRST_DAY, EXAMPLE_LAST_DAY = "2026-11-01", "2026-11-30"
EXAMPLE_NUMBER = re.compile(r"\bINV-2026-(\d{6})\b")

# Commands run by another test: their first words → (that test, a text that test must contain
# because it runs the command).
ELSEWHERE: dict[str, tuple[str, str]] = {
    "make demo": ("test_demo.py", '"demo"'),
    "make test": ("../.ci/run", "make test"),
    "make dev": ("test_dagster_dev.py", "from invoicesync_dagster.sandbox.dagster_dev import"),
    "dagster job backfill": ("test_dagster_dev.py", "stack.backfill("),
    "sudo -u postgres createuser": ("test_deploy.py", '"createuser"'),
    "sudo -u postgres createdb": ("test_deploy.py", '"createdb"'),
    "sudo systemd-analyze verify": ("test_deploy.py", '"systemd-analyze"'),
}
# Server set-up that needs root on a real server, systemd as PID 1 or a Docker daemon, none of
# which a test machine has. Allowed only in the README's Deployment section, which says so.
NOT_RUN = (
    "sudo useradd",
    "sudo python3.11 -m venv",
    "sudo /opt/invoicesync/.venv/bin/pip install",
    "sudo install",
    "sudo cp",
    "sudo systemctl",
    "docker ",
)
DEV_MODULE = "invoicesync_dagster.sandbox.dagster_dev"  # `make dev` is its main()
# `invoicesync` commands the README names outside its bash blocks, run by other tests.
CLI_ELSEWHERE: dict[str, str] = {
    "process-one": "test_cli_filing.py",
    "cui lookup": "test_cli_customers.py",
    "anaf login": "test_cli_anaf.py",
    "sandbox seed": "test_cli.py",
    "sandbox serve": "test_cli.py",
    "stripe charges": "test_cli.py",
}


def bash_commands(text: str) -> list[str]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                commands.append(line)
    return commands


def cli_path(words: list[str]) -> str:
    """The subcommand path of an `invoicesync` command line: `anaf login`, `process`."""
    path: list[str] = []
    command: click.Command = cli
    for word in words[1:]:
        if not isinstance(command, click.Group) or word not in command.commands:
            break
        command = command.commands[word]
        path.append(word)
    return " ".join(path)


def named_cli_commands(text: str) -> set[str]:
    """`invoicesync …` commands named outside the bash blocks (prose and the reference)."""
    outside = re.sub(r"```bash\n.*?```", "", text, flags=re.S)
    found = re.findall(r"(?:^|[`\s])(invoicesync(?: [a-z][\w-]*){1,2})", outside, flags=re.M)
    return {cli_path(line.split()) for line in found} - {""}


@dataclass
class Sandbox:
    folder: Path
    env: dict[str, str]
    days: list[str]
    year: int


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    folder = tmp_path_factory.mktemp("readme")
    last = seed.yesterday_in_bucharest()
    fixtures = folder / "stripe.jsonl"
    seed.write_jsonl(fixtures, seed.generate(2, seed=11, invoices_per_day=4, charges_per_day=2))
    with SandboxServer(stripe_fixtures=fixtures) as server:
        server.anaf_efactura.processing_seconds = 0  # answers at once: nothing to wait for
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANAF_", "STRIPE_"))}
        env.pop("MAKEFLAGS", None)
        env |= {k: v or "" for k, v in dotenv_values(ROOT / "sandbox.dotenv").items()}
        env |= {
            name: server.url
            for name in (
                "STRIPE_API_BASE",
                "ANAF_API_BASE",
                "ANAF_OAUTH_BASE",
                "ANAF_PUBLIC_API_BASE",
                "SMARTBILL_API_BASE",
            )
        }
        env["BNR_RATES_URL"] = f"{server.url}/bnr/nbrfxrates.xml"
        env["INVOICESYNC_HOME"] = str(folder / ".invoicesync")
        env["DAGSTER_HOME"] = str(folder / "dagster_home")
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        (folder / "dagster_home").mkdir()
        shutil.copy(ROOT / "dagster.yaml", folder / "dagster_home" / "dagster.yaml")
        login = run("invoicesync sandbox anaf-login", folder, env)  # named in the README
        assert login.returncode == 0, login.stdout + login.stderr
        # The README's queries need data: both seeded days filed and answered first.
        filed = run(
            "invoicesync process --provider anaf --type both --days 2 --wait-minutes 3", folder, env
        )
        assert filed.returncode == 0, filed.stdout + filed.stderr
        days = [(last - timedelta(days=n)).isoformat() for n in (1, 0)]
        yield Sandbox(folder, env, days, last.year)


def run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        shlex.split(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def as_run_here(command: str, sandbox: Sandbox) -> str:
    command = command.replace(EXAMPLE_FIRST_DAY, sandbox.days[0])
    command = command.replace(EXAMPLE_LAST_DAY, sandbox.days[-1])
    return EXAMPLE_NUMBER.sub(lambda m: f"INV-{sandbox.year}-{m.group(1)}", command)


README_COMMANDS = bash_commands(README.read_text(encoding="utf-8"))


def elsewhere(command: str) -> tuple[str, str] | None:
    return next((where for key, where in ELSEWHERE.items() if command.startswith(key)), None)


def not_run(command: str) -> bool:
    return command.startswith(NOT_RUN)


@pytest.mark.xdist_group("readme")
def test_readme_has_the_commands_a_new_user_needs() -> None:
    assert README_COMMANDS[:2] == ["make demo", "make test"]
    programs = {shlex.split(c)[0] for c in README_COMMANDS}
    assert programs <= {"make", "invoicesync", "duckdb", "dagster", "sudo", "docker"}, programs


@pytest.mark.xdist_group("readme")
def test_commands_no_test_runs_are_only_the_server_setup() -> None:
    text = README.read_text(encoding="utf-8")
    deployment = text[text.index("\n## Deployment\n") : text.index("\n## Scaling past one machine")]
    assert "the commands no test runs" in deployment
    unrun = [c for c in README_COMMANDS if not_run(c)]
    assert unrun and all(c in bash_commands(deployment) for c in unrun), unrun


@pytest.mark.xdist_group("readme")
@pytest.mark.parametrize("command", [c for c in README_COMMANDS if elsewhere(c)])
def test_commands_run_by_another_test(command: str) -> None:
    test_file, marker = elsewhere(command)  # type: ignore[misc]
    source = (TESTS / test_file).read_text(encoding="utf-8")
    assert marker in source, f"{test_file} no longer runs `{command}`"
    if command.startswith("make "):  # and the target still runs what that test runs
        recipes = {"demo": "-m invoicesync_dagster.demo", "dev": "-m " + DEV_MODULE}
        target = command.split()[1]
        assert target not in recipes or recipes[target] in (ROOT / "Makefile").read_text()


@pytest.mark.xdist_group("readme")
def test_every_invoicesync_command_named_is_run_somewhere() -> None:
    text = README.read_text(encoding="utf-8")
    run_here = {cli_path(shlex.split(c)) for c in README_COMMANDS if c.startswith("invoicesync")}
    run_here.add("sandbox anaf-login")  # by the fixture
    missing = named_cli_commands(text) - run_here - set(CLI_ELSEWHERE)
    assert not missing, f"README names commands no test runs: {sorted(missing)}"
    for path, test_file in CLI_ELSEWHERE.items():
        source = (TESTS / test_file).read_text(encoding="utf-8")
        assert f'"{path.split()[-1]}"' in source, f"{test_file} does not run invoicesync {path}"


@pytest.mark.xdist_group("readme")
@pytest.mark.parametrize(
    "command",
    [c for c in README_COMMANDS if not elsewhere(c) and not not_run(c)],
    ids=lambda c: c[:60],
)
def test_readme_command_runs(command: str, sandbox: Sandbox) -> None:
    line = as_run_here(command, sandbox)
    words = shlex.split(line)
    # make and dagster run from the checkout (Makefile, workspace.yaml); the rest from the
    # user's working folder, where `.invoicesync/` is.
    cwd = ROOT if words[0] in ("make", "dagster") else sandbox.folder
    if words[:2] == ["make", "bench"]:  # the same benchmarks, at a size a test can afford
        words += ["INGEST_ARGS=--invoices 300 --latency-ms 0", "DOCUMENTS_ARGS=--days 2"]
        line = shlex.join(words)
    done = run(line, cwd, sandbox.env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"`{line}` failed:\n{output[-3000:]}"
    assert "Traceback" not in output
    if "-o" in words:  # what it wrote is there
        written = sandbox.folder / words[words.index("-o") + 1]
        assert written.is_file() and written.stat().st_size > 0, written
    if words[:2] == ["invoicesync", "status"]:
        assert words[2] in output
    if words[:2] == ["dagster", "schedule"]:
        listed = run("dagster schedule list -w workspace.yaml", ROOT, sandbox.env)
        assert re.search(rf"{words[3]}.*\[RUNNING\]", listed.stdout), listed.stdout
