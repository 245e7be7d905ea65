"""`genrec run`'s config: configs/demo.yaml is exactly what `genrec demo` runs, and a bad file is refused whole."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest
import yaml

from genrec.align.config import AlignConfig
from genrec.cascade.retriever import CascadeConfig
from genrec.config_file import load_config
from genrec.data.synth import WorldConfig
from genrec.demo import run_demo
from genrec.eval.harness import EvalConfig
from genrec.pipeline import PipelineConfig
from genrec.pipeline.config import DEMO_RETRIEVERS, DEMO_SIDS
from genrec.sid.build import SidConfig
from genrec.train.generative import GenerativeTrainConfig

DEMO_YAML = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def test_demo_yaml_loads_to_exactly_the_configs_the_demo_runs(monkeypatch, tmp_path):
    loaded = load_config(PipelineConfig, DEMO_YAML)
    assert loaded.data.loader == "synth" and loaded.data.world == WorldConfig()
    assert loaded.sid == SidConfig(**DEMO_SIDS)
    assert loaded.train == GenerativeTrainConfig()
    assert loaded.cascade == CascadeConfig()
    assert loaded.align == AlignConfig()
    assert loaded.eval.retrievers == DEMO_RETRIEVERS and loaded.eval.harness == EvalConfig()
    assert loaded.eval.part == "test" and loaded.eval.max_requests is None
    ran = {}
    monkeypatch.setattr("genrec.pipeline.run_pipeline", lambda run, config, **options: ran.update(config=config))
    run_demo(tmp_path / "demo")
    assert ran["config"] == loaded


def _keys(config) -> set[str]:
    """Every field's dotted path, through nested config dataclasses."""
    out = set()
    for f in fields(config):
        value = getattr(config, f.name)
        out |= {f"{f.name}.{key}" for key in _keys(value)} if is_dataclass(value) else {f.name}
    return out


def _file_keys(values: dict, config, prefix: str = "") -> set[str]:
    """The file's dotted keys, entering a mapping only where `config` has a section (a mapping-valued
    field such as cascade.search_quotas is one setting)."""
    out = set()
    for key, value in values.items():
        section = getattr(config, key, None)
        nested = isinstance(value, dict) and is_dataclass(section)
        out |= _file_keys(value, section, f"{prefix}{key}.") if nested else {f"{prefix}{key}"}
    return out


def test_demo_yaml_spells_out_every_setting():
    """So it documents every knob, and a new or renamed field cannot be missing from it."""
    assert _file_keys(yaml.safe_load(DEMO_YAML.read_text()), PipelineConfig()) == _keys(PipelineConfig())


def test_a_pipeline_file_names_only_what_differs_and_toml_reads_like_yaml(tmp_path):
    (tmp_path / "a.toml").write_text('[data.world]\nn_items = 600\n[train.model]\nd_model = 64\n[eval]\nretrievers = ["bm25"]\n')
    (tmp_path / "a.yaml").write_text("data: {world: {n_items: 600}}\ntrain: {model: {d_model: 64}}\neval: {retrievers: [bm25]}\n")
    toml, yml = load_config(PipelineConfig, tmp_path / "a.toml"), load_config(PipelineConfig, tmp_path / "a.yaml")
    assert toml == yml
    assert (yml.data.world.n_items, yml.data.world.n_users, yml.train.model.d_model) == (600, 5000, 64)
    assert yml.eval.retrievers == ("bm25",) and not yml.trains_generative and not yml.aligns
    assert load_config(PipelineConfig, None, ["eval.retrievers=bm25,generative"]).trains_generative


def test_problems_in_every_section_come_back_in_one_error(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "data: {loader: parquet, world: {n_users: 5}}\nsid: {method: kmeans}\ntrain: {model: {dropuot: 0.2}}\n"
        "align: {reward: oracle}\neval: {retrievers: [bm25, bm52], harness: {k: 0}}\nserve: {}\n"
        "cascade: {device: gpu, ranker: {dim: 8}}\n")
    with pytest.raises(ValueError) as caught:
        load_config(PipelineConfig, tmp_path / "bad.yaml", ["train.train.steps=-1"])
    paths = [p.split(":")[0] for p in caught.value.problems]
    assert sorted(paths) == sorted(["data.world.n_users", "data.loader", "sid.method", "train.model.dropuot",
                                    "train.train.steps", "align.reward", "eval.harness.k", "eval.retrievers", "serve",
                                    "cascade.device"])
    assert "got 'gpu'" in str(caught.value)
