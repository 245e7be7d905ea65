"""What a user installing genrec gets: a license, type information, a version, a quick --help, and every
third-party import declared."""

import ast
import importlib
import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import genrec
from genrec.cli import COMMAND_MODULES, COMMAND_SUMMARIES, build_parser, main

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "genrec"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_license_is_the_one_pyproject_declares_and_the_package_is_typed():
    assert PYPROJECT["project"]["license"]["text"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
    assert (SRC / "py.typed").exists() and "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["genrec"]


def test_version_prints_the_pyproject_version(capsys):
    assert genrec.__version__ == PYPROJECT["project"]["version"]
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"genrec {PYPROJECT['project']['version']}"


def test_help_lists_every_subcommand_with_the_help_its_module_registers(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    listing = capsys.readouterr().out
    assert set(COMMAND_SUMMARIES) == set(COMMAND_MODULES)
    for module in COMMAND_MODULES:
        name, summary = COMMAND_SUMMARIES[module]
        registered = build_parser(name)._subparsers._group_actions[0]
        helps = {action.dest: action.help for action in registered._choices_actions}
        assert helps[name] == summary, f"{module}: COMMAND_SUMMARIES is out of date"
        assert re.search(rf"^\s+{name}\s", listing, re.M), name


def test_help_imports_neither_torch_nor_pandas_nor_fastapi():
    code = ("import sys, contextlib, io\nfrom genrec.cli import main\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n    main(['--help'])\n"
            "print(sorted(m for m in ('torch', 'pandas', 'fastapi', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO / "src"), "PATH": ""}).stdout
    assert out.strip() == "[]"


def test_no_command_imports_torch_to_build_its_parser_or_print_its_help():
    """`genrec COMMAND --help` must not wait seconds for torch: a command module imports its stage
    inside the function that runs it. Each command in a fresh process, since an import sticks."""
    code = ("import sys, contextlib, io\nfrom genrec.cli import build_parser, main\nname = sys.argv[1]\n"
            "build_parser(name)\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    main([name, '--help'])\n"
            "print(' '.join(m for m in ('torch', 'sentence_transformers') if m in sys.modules))")
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": ""}
    imported = {name: subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True, check=True,
                                     env=env).stdout.strip()
                for name, _ in COMMAND_SUMMARIES.values()}
    assert len(imported) == len(COMMAND_MODULES)
    assert {name: modules for name, modules in imported.items() if modules} == {}


def _third_party_imports() -> dict[str, set[str]]:
    """top-level module → the files under src/genrec importing it (anywhere, functions included)."""
    stdlib = set(sys.stdlib_module_names)
    found: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in stdlib and top != "genrec":
                    found.setdefault(top, set()).add(str(path.relative_to(SRC)))
    return found


EXTRA_PACKAGES = {"serve": ("serve/",), "offline": ("features/text.py",),
                  "plots": ("eval/report.py", "cascade/calibrate.py")}
"""An optional extra → the only part of genrec allowed to import what it brings."""


def test_every_third_party_import_is_a_declared_run_time_dependency():
    core = {_requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
    extras = {name: {_requirement_name(r) for r in requirements}
              for name, requirements in PYPROJECT["project"]["optional-dependencies"].items() if name != "test"}
    assert set(extras) == set(EXTRA_PACKAGES)
    distributions = importlib.metadata.packages_distributions()
    imports = _third_party_imports()
    assert {"torch", "numpy", "pandas", "scipy", "transformers"} <= set(imports)  # the scan sees function-level imports
    problems = {}
    for module, files in sorted(imports.items()):
        names = {d.lower().replace("_", "-") for d in distributions.get(module, [])}
        if names & core:
            continue
        extra = next((e for e, declared in extras.items() if names & declared), None)
        if extra is None:
            problems[module] = f"not in [project.dependencies] (distributions {sorted(names)}, imported by {sorted(files)[:3]})"
        elif any(not f.startswith(EXTRA_PACKAGES[extra]) for f in files):  # str.startswith takes a tuple
            problems[module] = f"comes with the '{extra}' extra but is imported outside {EXTRA_PACKAGES[extra]}: {sorted(files)[:3]}"
    assert not problems, json.dumps(problems, indent=1)


def test_a_command_whose_extra_is_missing_says_what_to_install():
    code = ("import sys\nclass Block:\n    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'fastapi':\n            raise ModuleNotFoundError(name=name)\n"
            "sys.meta_path.insert(0, Block())\nfrom genrec.cli import main\n"
            "main(['data', '--help']) if sys.argv[1] == 'data' else main(['serve', 'runs/x'])")
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": ""}
    serve = subprocess.run([sys.executable, "-c", code, "serve"], capture_output=True, text=True, env=env)
    assert serve.returncode == 1 and "pip install 'genrec[serve]'" in serve.stderr
    data = subprocess.run([sys.executable, "-c", code, "data"], capture_output=True, text=True, env=env)
    assert data.returncode == 0 and "validate" in data.stdout  # the core works without the extra
