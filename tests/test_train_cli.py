"""`genrec train`: the checkpoint intervals are settable, and `--resume` with nothing to resume says so."""

from __future__ import annotations

import json
from pathlib import Path

from genrec.cli import main as genrec_main
from genrec.train import commands


def test_cli_passes_the_checkpoint_intervals_to_the_trainer(tmp_path, monkeypatch, capsys):
    (tmp_path / "data").mkdir()
    received = {}

    def fake_train_model(name, run, **options):
        received.update(options, name=name)
        return {"model": name}

    monkeypatch.setattr(commands, "train_model", fake_train_model)
    assert genrec_main(["train", "--run", str(tmp_path), "--model", "generative",
                        "--checkpoint-every", "50", "--checkpoint-seconds", "20"]) == 0
    assert received["checkpoint_every"] == 50 and received["checkpoint_seconds"] == 20.0
    assert genrec_main(["train", "--run", str(tmp_path), "--model", "sasrec"]) == 0
    assert received["checkpoint_every"] is None and received["checkpoint_seconds"] is None  # the model's defaults
    capsys.readouterr()


def test_sasrec_trains_with_the_checkpoint_intervals_from_the_cli(small_world, tmp_path, capsys):
    small_world.save(tmp_path / "data")
    assert genrec_main(["train", "--run", str(tmp_path), "--model", "sasrec", "--steps", "3", "--device", "cpu",
                        "--checkpoint-every", "1", "--checkpoint-seconds", "15"]) == 0
    folder = Path(json.loads(capsys.readouterr().out)["folder"])
    saved = json.loads((folder / "config.json").read_text())["train"]
    assert (saved["steps"], saved["checkpoint_every"], saved["checkpoint_seconds"]) == (3, 1, 15.0)
    curve = (folder / "metrics.csv").read_text().splitlines()  # RUN/train/sasrec/metrics.csv: the last step's row
    assert folder == tmp_path / "train" / "sasrec" and curve[0].startswith("step,loss,lr,examples_per_s") and curve[-1].startswith("3,")


def test_cli_resume_with_nothing_to_resume_exits_non_zero_and_says_so(small_world, tmp_path, capsys):
    small_world.save(tmp_path / "data")
    assert genrec_main(["train", "--run", str(tmp_path), "--model", "sasrec", "--resume", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "nothing to resume" in err and "last.pt" in err and "without --resume" in err
    assert not (tmp_path / "train").exists() or not any((tmp_path / "train").rglob("*.pt"))


def test_sasrec_resume_survives_a_change_of_checkpoint_intervals(small_world):
    """Otherwise `--resume --checkpoint-seconds 30` after a default run silently starts over
    (SASRec resumes only when the fingerprint of what it learns matches)."""
    from dataclasses import replace

    from genrec.baselines import sasrec
    from genrec.data.splits import interactions, leave_one_out

    inter = interactions(leave_one_out(small_world.dataset.events).train)
    categories, _ = sasrec.leaf_categories(small_world.dataset)
    config = sasrec.SASRecConfig()
    other = replace(config, train=replace(config.train, checkpoint_every=7, checkpoint_seconds=5.0))
    learns_otherwise = replace(config, train=replace(config.train, lr=config.train.lr * 2))
    assert sasrec._fingerprint(inter, categories, config) == sasrec._fingerprint(inter, categories, other)
    assert sasrec._fingerprint(inter, categories, config) != sasrec._fingerprint(inter, categories, learns_otherwise)
