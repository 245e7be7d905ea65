"""`genrec run --config FILE --run RUN` end to end on a tiny world: every stage, then a report with the
retrievers the file names; a second run reuses every stage it can."""

from __future__ import annotations

import json

from conftest import SMALL_WORLD_SIZE

from genrec.cli import main as genrec_main
from genrec.features import item_vectors as item_vectors_module
from tests.test_sid import fake_text_encoder

RETRIEVERS = ["popularity", "bm25", "itemcf", "generative", "generative-aligned", "oracle"]

TINY = f"""
data:
  world: {json.dumps(SMALL_WORLD_SIZE)}
train:
  valid_requests: 20
  beams: 5
  query_vectors: false          # no MiniLM for queries in a unit test
  model: {{d_model: 32, n_heads: 2, d_ff: 64, n_encoder_layers: 1, n_decoder_layers: 1, max_short: 4, max_long: 4}}
  train: {{steps: 4, batch_size: 32, eval_every: 4, checkpoint_every: 4, warmup_steps: 1, progress: false}}
align:                          # PARS reward, no distillation: no cascade to train
  per_user: 1
  max_examples: 60
  valid_requests: 20
  beams: 5
  eval_every: 2
  batch_size: 16
  distill_steps: 0
  grpo_steps: 2
  grpo_group: 4
  grpo_batch_size: 8
  reward: pars
  progress: false
eval:
  retrievers: {json.dumps(RETRIEVERS)}
  max_requests: 60
  harness: {{bootstrap: 20, latency_requests: 5}}
"""


def test_genrec_run_makes_every_stage_and_an_eval_report_from_one_yaml_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(item_vectors_module, "encode_texts", fake_text_encoder)
    config, run = tmp_path / "tiny.yaml", tmp_path / "run"
    config.write_text(TINY)
    assert genrec_main(["run", "--config", str(config), "--run", str(run), "--set", "sid.levels=1"]) == 0
    for stage in ("data", "features", "sid", "train/generative", "align/generative", "eval"):
        assert (run / stage / "manifest.json").exists(), stage
    report = json.loads((run / "eval" / "report.json").read_text())
    assert sorted(report["retrievers"]) == sorted(RETRIEVERS)
    assert report["n_requests"] == 60
    assert all(name in (run / "eval" / "report.md").read_text() for name in RETRIEVERS)
    trained = json.loads((run / "train" / "generative" / "config.json").read_text())
    assert trained["model"]["d_model"] == 32 and trained["train"]["steps"] == 4  # the file's, not the demo's
    assert not (run / "train" / "sasrec").exists() and not (run / "cascade").exists()  # not asked for
    capsys.readouterr()

    model = (run / "train" / "generative" / "best.pt").stat().st_mtime_ns
    assert genrec_main(["run", "--config", str(config), "--run", str(run)]) == 0
    err = capsys.readouterr().err
    for stage in ("data", "sid", "train/generative", "align/generative"):
        assert f"reusing {run / stage}" in err, stage
    assert (run / "train" / "generative" / "best.pt").stat().st_mtime_ns == model

    # The README's pictures are this evaluation's plots (`make readme-images`: genrec demo --images docs).
    from genrec.config_file import load_config
    from genrec.pipeline import PipelineConfig, run_pipeline

    (run / "eval" / "recall_at_k.png").unlink()
    run_pipeline(run, load_config(PipelineConfig, config), images=tmp_path / "docs")
    for name in ("recall_at_k", "slices"):
        drawn = (run / "eval" / f"{name}.png").read_bytes()
        assert drawn.startswith(b"\x89PNG") and (tmp_path / "docs" / f"demo_{name}.png").read_bytes() == drawn


def test_genrec_run_with_a_bad_config_names_every_problem_and_runs_nothing(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text('[train.model]\ndropuot = 0.2\nd_model = "big"\n')
    assert genrec_main(["run", "--config", str(config), "--run", str(tmp_path / "run"), "--set", "eval.part=tset"]) == 2
    err = capsys.readouterr().err
    assert "3 problems" in err and "train.model.dropuot" in err and "train.model.d_model" in err and "eval.part" in err
    assert not (tmp_path / "run").exists()


def test_genrec_run_with_a_missing_loader_source_says_what_it_could_not_read(tmp_path, capsys):
    config = tmp_path / "beauty.toml"
    config.write_text(f'[data]\nloader = "p5-amazon"\nsource = "{tmp_path / "nowhere"}"\n')
    assert genrec_main(["run", "--config", str(config), "--run", str(tmp_path / "run")]) == 1
    assert "nowhere" in capsys.readouterr().err
