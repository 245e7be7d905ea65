"""Config files (TOML, YAML, JSON) and `--set`: every bad field is named, by its dotted path, in one error."""

from __future__ import annotations

import json

import pytest

from genrec.align.config import AlignConfig
from genrec.config_check import ConfigError, build_config
from genrec.config_file import load_config
from genrec.model.config import GenerativeConfig
from genrec.train.generative import GenerativeTrainConfig
from genrec.train.loop import TrainConfig

BEAUTY_TOML = """
max_history = 20
index_copies = 0

[model]
tasks = "recommendation"
dropout = 0.2
latest_in_summary = true

[train]
steps = 6000
lr = 2e-3
checkpoint_seconds = 30
"""

BEAUTY_YAML = """
max_history: 20
index_copies: 0
model:
  tasks: recommendation
  dropout: 0.2
  latest_in_summary: true
train:
  steps: 6000
  lr: 2e-3          # YAML 1.1 would read this as a string
  checkpoint_seconds: 30
"""


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def _problems(cls, tmp_path, name, text, overrides=()):
    with pytest.raises(ConfigError) as caught:
        load_config(cls, _write(tmp_path, name, text), overrides)
    assert isinstance(caught.value, ValueError)  # what every caller already catches
    return caught.value.problems, str(caught.value)


def test_yaml_toml_and_json_of_the_same_settings_load_equal(tmp_path):
    toml = load_config(GenerativeTrainConfig, _write(tmp_path, "a.toml", BEAUTY_TOML))
    yaml = load_config(GenerativeTrainConfig, _write(tmp_path, "a.yaml", BEAUTY_YAML))
    yml = load_config(GenerativeTrainConfig, _write(tmp_path, "a.yml", BEAUTY_YAML))
    assert toml == yaml == yml
    assert yaml.train.lr == 0.002 and isinstance(yaml.train.lr, float)
    assert yaml.train.checkpoint_seconds == 30.0 and yaml.model.tasks == "recommendation"
    assert yaml.train.batch_size == GenerativeTrainConfig().train.batch_size  # unset: the stage's default, not TrainConfig's
    assert GenerativeTrainConfig().train != TrainConfig()
    as_json = _write(tmp_path, "a.json", json.dumps(toml.to_dict()))
    assert load_config(GenerativeTrainConfig, as_json) == toml


def test_a_misspelt_key_inside_a_section_is_named_by_its_dotted_path(tmp_path):
    problems, message = _problems(GenerativeTrainConfig, tmp_path, "a.yaml", "model:\n  dropuot: 0.2\n")
    assert len(problems) == 1 and problems[0].startswith("model.dropuot: unknown key")
    assert "did you mean 'dropout'" in message


@pytest.mark.parametrize("section", ["", "[model]\n", "[train]\n"])
def test_an_unknown_key_is_refused_at_every_level(tmp_path, section):
    problems, _ = _problems(GenerativeTrainConfig, tmp_path, "a.toml", f"{section}stepz = 3\n")
    prefix = section.strip("[]\n")
    assert problems == [p for p in problems if p.startswith(f"{prefix + '.' if prefix else ''}stepz: unknown key")]
    assert len(problems) == 1


def test_every_bad_field_is_listed_in_one_error(tmp_path):
    text = """
index_copies = -1
bogus = 1
[model]
d_model = "big"
n_heads = true
dropout = 2.0
[train]
steps = 0
lr = -1
warmup_steps = 1.5
"""
    problems, message = _problems(GenerativeTrainConfig, tmp_path, "a.toml", text)
    paths = {p.split(":")[0] for p in problems}
    assert paths == {"index_copies", "bogus", "model.d_model", "model.n_heads", "model.dropout", "train.steps",
                     "train.lr", "train.warmup_steps"}
    assert message.startswith("8 problems in the GenerativeTrainConfig config")
    assert "model.d_model: expected an int, got 'big'" in message
    assert "model.n_heads: expected an int, got True (bool)" in message  # a bool is not an int
    assert "model.dropout: dropout must be in [0, 1), got 2.0" in message  # the dataclass's own check


def test_two_refused_values_of_one_section_are_both_reported(tmp_path):
    """A `__post_init__` stops at its first check; the builder keeps asking until the section builds."""
    problems, _ = _problems(AlignConfig, tmp_path, "a.yaml", "lr: 0\ngrpo_group: 1\nreward: oracle\n")
    assert [p.split(":")[0] for p in problems] == ["reward", "grpo_group", "lr"]
    assert "only measures reward hacking" in problems[0]


def test_a_cross_field_check_names_the_field_and_keeps_the_dataclass_message(tmp_path):
    problems, _ = _problems(GenerativeConfig, tmp_path, "a.json", json.dumps({"d_model": 130}))
    assert problems == ["d_model: d_model (130) must be divisible by n_heads (4)"]


def test_set_values_take_their_field_type_and_their_problems_join_the_file_problems(tmp_path):
    config = load_config(GenerativeTrainConfig, None, ["train.checkpoint_seconds=none", "model.latest_in_summary=yes",
                                                       "model.dropout=0.3", "train.lr=1e-3"])
    assert config.train.checkpoint_seconds is None and config.model.latest_in_summary is True
    assert (config.model.dropout, config.train.lr) == (0.3, 0.001)
    problems, _ = _problems(GenerativeTrainConfig, tmp_path, "a.toml", "[model]\ndropuot = 0.1\n",
                            ["model.d_model=big", "train.stepz=3", "model.latest_in_summary=maybe"])
    assert [p.split(":")[0] for p in problems] == ["model.dropuot", "model.d_model", "model.latest_in_summary",
                                                    "train.stepz"]


def test_a_trained_models_saved_config_reads_back(tmp_path):
    config = load_config(GenerativeTrainConfig, None, ["model.d_model=64", "train.steps=5", "beams=7"])
    saved = {**config.to_dict(), "inputs": {"codebook_sizes": [8, 8]}, "align": {"lr": 1.0}}  # a trained, aligned model's
    assert load_config(GenerativeTrainConfig, _write(tmp_path, "config.json", json.dumps(saved))) == config


def test_lists_become_the_tuples_their_fields_hold_and_a_wrong_length_is_refused():
    from genrec.data.synth import WorldConfig

    world = build_config(WorldConfig, {"scenario_mix": [0.5, 0.3, 0.2]})
    assert world.scenario_mix == (0.5, 0.3, 0.2)
    with pytest.raises(ConfigError, match=r"scenario_mix: expected a list of 3 values"):
        build_config(WorldConfig, {"scenario_mix": [0.5, 0.5]})


def test_a_file_of_another_format_or_not_a_mapping_says_so(tmp_path):
    with pytest.raises(ValueError, match=r"expected one of \['.toml', '.yaml', '.yml', '.json'\]"):
        load_config(AlignConfig, _write(tmp_path, "a.ini", "lr = 1"))
    with pytest.raises(ValueError, match="expected a mapping"):
        load_config(AlignConfig, _write(tmp_path, "a.yaml", "- 1\n- 2\n"))
    with pytest.raises(ValueError, match="cannot parse config file"):
        load_config(AlignConfig, _write(tmp_path, "a.yaml", "lr: [1\n"))
    with pytest.raises(ValueError, match="does not exist"):
        load_config(AlignConfig, tmp_path / "missing.toml")
    assert load_config(AlignConfig, _write(tmp_path, "empty.yaml", "")) == AlignConfig()


def test_genrec_align_reports_every_bad_setting_of_its_file_and_set_before_it_runs(tmp_path, capsys):
    from genrec.cli import main

    config = _write(tmp_path, "align.yaml", "grpo_group: 1\nbeems: 5\n")
    assert main(["align", "--run", str(tmp_path / "no-run"), "--config", str(config), "--set", "reward=oracle"]) == 2
    error = capsys.readouterr().err
    assert "3 problems in the AlignConfig config" in error
    assert "grpo_group" in error and "beems: unknown key (did you mean 'beams'?)" in error and "reward" in error
