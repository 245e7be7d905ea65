"""A cached model is only reused as the current code's model when the code that trained it is unchanged."""

import json
import sys
import warnings

import pytest

from genrec.artifacts import code_fingerprint, manifest, write_json_atomic
from genrec.model.retriever import GENERATIVE_CODE, warn_if_other_code
from genrec.pipeline.run import _complete


@pytest.fixture
def toy_package(tmp_path, monkeypatch):
    """An importable package `toypkg` with a module and a subpackage, removed from sys.modules after."""
    root = tmp_path / "toypkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "model.py").write_text("WIDTH = 64\n")
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "loop.py").write_text("STEPS = 10\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield root
    for name in [n for n in sys.modules if n == "toypkg" or n.startswith("toypkg.")]:
        del sys.modules[name]


def test_the_fingerprint_follows_every_source_file_of_a_package_and_only_the_modules_named(toy_package):
    whole, module = code_fingerprint("toypkg"), code_fingerprint("toypkg.model")
    assert code_fingerprint("toypkg") == whole  # deterministic
    assert code_fingerprint("toypkg.model", "toypkg.sub") == code_fingerprint("toypkg.sub", "toypkg.model")
    (toy_package / "sub" / "loop.py").write_text("STEPS = 11\n")  # a file deep inside the package
    assert code_fingerprint("toypkg") != whole
    assert code_fingerprint("toypkg.model") == module  # a module not named is not part of it
    (toy_package / "model.py").write_text("WIDTH = 128\n")
    assert code_fingerprint("toypkg.model") != module
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        code_fingerprint("no_such_module")


def test_the_demo_rebuilds_a_stage_made_by_other_code(tmp_path):
    stage = tmp_path / "model"
    stage.mkdir()
    write_json_atomic(stage / "manifest.json", manifest({"steps": 700}, code="hash-of-today"))
    assert _complete(stage, {"steps": 700}, code="hash-of-today")
    assert not _complete(stage, {"steps": 700}, code="hash-of-yesterday")
    assert _complete(stage, {"steps": 700})  # a stage that names no code is judged on config and inputs only


def test_a_generative_model_from_other_code_is_kept_but_named_in_a_warning(tmp_path):
    folder = tmp_path / "train" / "generative"
    folder.mkdir(parents=True)
    write_json_atomic(folder / "manifest.json", manifest({}, code=code_fingerprint(*GENERATIVE_CODE)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_if_other_code(folder)
    saved = json.loads((folder / "manifest.json").read_text())
    write_json_atomic(folder / "manifest.json", {**saved, "code": "older"})
    with pytest.warns(UserWarning, match="trained by other genrec.model / genrec.train code.*--force"):
        assert warn_if_other_code(folder)
    write_json_atomic(folder / "manifest.json", {k: v for k, v in saved.items() if k != "code"})
    with pytest.warns(UserWarning, match="no code hash recorded"):
        assert warn_if_other_code(folder)
