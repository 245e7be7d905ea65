"""The align stage on the small generated world: artefact layout, resume, guards, clear errors."""

import json

import numpy as np
import pytest
import torch

from genrec.align import AlignConfig, align_generative, build_reward
from genrec.align.examples import align_examples
from genrec.align.rewards import PARSReward, PreferenceWeights, RankerReward
from genrec.data.splits import leave_one_out
from genrec.model import GenerativeConfig
from genrec.train.generative import GenerativeTrainConfig, train_generative
from genrec.train.loop import TrainConfig

TINY = dict(d_model=32, n_heads=2, d_ff=64, dropout=0.0, n_encoder_layers=1, n_decoder_layers=1,
            max_short=4, max_long=4)
QUICK = dict(per_user=1, max_examples=60, valid_requests=30, beams=5, eval_every=2, batch_size=16,
             sft_steps=2, high_value_steps=2, distill_steps=0, grpo_steps=2, grpo_group=4, grpo_batch_size=8,
             reward="pars", kl_weight=0.1, progress=False)


@pytest.fixture(scope="module")
def trained_run(small_world, tmp_path_factory):
    from genrec.sid.table import SidTable

    run = tmp_path_factory.mktemp("align") / "run"
    ids = small_world.dataset.items["item_id"].to_numpy()
    index = np.arange(len(ids))
    small_world.save(run / "data")
    SidTable(ids, np.stack([index // 64, (index // 8) % 8, index % 8], axis=1), [10, 8, 8]).save(run / "sid")
    config = GenerativeTrainConfig(
        model=GenerativeConfig(**TINY), query_vectors=False,
        train=TrainConfig(steps=4, batch_size=32, eval_every=4, checkpoint_every=4, warmup_steps=1, progress=False),
        valid_requests=20, beams=5)
    train_generative(run, config, progress=False)
    return run


def test_align_writes_a_model_folder_the_generative_retriever_loads(trained_run, small_world):
    from genrec.model.retriever import GenerativeRetriever
    from genrec.registry import build_retriever
    from genrec.sid.table import SidTable

    folder = align_generative(trained_run, AlignConfig(**QUICK))
    assert folder == trained_run / "align" / "generative"
    assert {"best.pt", "config.json", "encoder.json", "manifest.json"} <= {p.name for p in folder.iterdir()}
    saved = json.loads((folder / "config.json").read_text())
    assert saved["align"]["reward"] == "pars" and "model" in saved  # the base layout plus the align config
    result = json.loads((folder / "manifest.json").read_text())["result"]
    assert set(result["phases"]) == {"sft", "high_value", "grpo"}
    for phase in result["phases"].values():
        for entry in phase["history"]:  # the guards at every evaluation step
            assert {"coverage@10", "popularity@10", "true_recall@10", "recall@10", "select"} <= set(entry)
    # the head's mixes, chosen last on validation, are what the aligned model serves with
    chosen = result["head_mix"]
    candidates = list(AlignConfig().head_mixes)
    assert sorted({row[0] for row in chosen["table"]}) == candidates
    assert saved["model"]["item_head_mix"] == chosen["item_head_mix"] in candidates
    assert saved["model"]["item_head_search_mix"] == chosen["item_head_search_mix"] in candidates
    served = GenerativeRetriever.load(folder, SidTable.load(trained_run / "sid"))
    assert (served.item_head_mix, served.search_mix) == (chosen["item_head_mix"], chosen["item_head_search_mix"])
    # this model reads no query vectors, so the text-match weight stays 0, saved and served alike
    assert saved["model"]["item_head_text_match"] == chosen["item_head_text_match"] == served.item_head_text_match == 0
    # keywords need no query vectors: their weight is chosen too, and the index travels with a model that uses it
    assert sorted({row[2] for row in chosen["table"]}) == list(AlignConfig().keyword_matches)
    assert saved["model"]["keyword_match"] == chosen["keyword_match"] == served.keyword_match
    assert (folder / "keywords.npz").exists() == (served.keyword_match > 0) == (served.keywords is not None)
    split = leave_one_out(small_world.dataset.events)
    aligned = build_retriever("generative-aligned", trained_run, small_world.dataset, split)
    assert aligned.name == "generative-aligned"
    requests = align_examples(split, 1, limit=5).requests
    answers = aligned.retrieve(requests, 5)
    assert all(len(a) == 5 for a in answers)


def test_a_second_run_resumes_finished_phases_instead_of_retraining(trained_run):
    align_generative(trained_run, AlignConfig(**QUICK))
    done = trained_run / "align" / "work" / "sft" / "done.json"
    stamp = done.stat().st_mtime_ns
    before = torch.load(trained_run / "align" / "generative" / "best.pt", weights_only=True)["model"]
    align_generative(trained_run, AlignConfig(**QUICK))
    assert done.stat().st_mtime_ns == stamp
    after = torch.load(trained_run / "align" / "generative" / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match="another AlignConfig"):
        align_generative(trained_run, AlignConfig(**{**QUICK, "sft_steps": 3}))


def test_a_run_without_a_trained_model_names_what_is_missing(small_world, tmp_path):
    small_world.save(tmp_path / "data")
    with pytest.raises(ValueError, match=r"train/generative.*genrec train --run"):
        align_generative(tmp_path, AlignConfig(**QUICK))


def test_a_bad_reward_source_is_refused_with_its_name(trained_run):
    with pytest.raises(ValueError, match="'oracle' only measures reward hacking"):
        AlignConfig(reward="oracle")
    with pytest.raises(ValueError, match="reward must be one of"):
        build_reward("clicks", trained_run)
    with pytest.raises(ValueError, match=r"cascade/model.*genrec cascade train"):
        RankerReward.from_run(trained_run)
    with pytest.raises(ValueError, match=r"distill phase needs the cascade"):
        align_generative(trained_run, AlignConfig(**{**QUICK, "distill_steps": 2}), resume=False)


def test_pars_weights_order_behaviour_by_depth_and_lift_low_slots(small_world):
    events = small_world.dataset.events
    weights = PreferenceWeights().fit(events)
    impression, click, cart, order = weights.depth_
    assert impression == 0 and click == pytest.approx(1.0) and click < cart < order
    top, low = weights.weight(["click", "click"], np.array([0, 8]))
    assert low >= top == pytest.approx(1.0)
    split = leave_one_out(events)
    examples = align_examples(split, per_user=1, limit=50)
    reward = PARSReward.from_events(split.train, examples.visits(), weights)
    scores = reward.score(examples.requests, np.stack([examples.targets, np.full(len(examples), -1)], 1))
    assert (scores[:, 0] >= 1.0).all() and (scores[:, 1] == 0).all()  # the logged target is rewarded, padding not


def test_the_demo_reuses_an_aligned_model_made_from_the_same_base_and_config(trained_run):
    from genrec.align.stage import align_if_stale

    folder = align_if_stale(trained_run, AlignConfig(**QUICK))
    stamp = (folder / "best.pt").stat().st_mtime_ns
    assert align_if_stale(trained_run, AlignConfig(**QUICK)) == folder
    assert (folder / "best.pt").stat().st_mtime_ns == stamp


def test_the_demo_realigns_when_the_config_changed_instead_of_refusing_the_old_work(trained_run):
    import json

    from genrec.align.stage import align_if_stale

    align_if_stale(trained_run, AlignConfig(**QUICK))
    changed = AlignConfig(**{**QUICK, "seed": 1})
    folder = align_if_stale(trained_run, changed)  # a resumed run of another config would be refused
    assert json.loads((folder / "manifest.json").read_text())["config"]["seed"] == 1


def test_teacher_lists_add_the_logged_target_and_teach_only_the_chosen_rows(small_world):
    from genrec.align.examples import teacher_lists
    from genrec.retrieval import Ranked

    class Fixed:
        def retrieve(self, requests, k):
            return [Ranked(np.arange(1, k + 1), np.linspace(0.9, 0.5, k)) for _ in requests]

    examples = align_examples(leave_one_out(small_world.dataset.events), per_user=1, limit=6)
    examples.targets[:] = [1, 500, 1, 500, 1, 500]  # in the teacher's list or not
    taught = np.array([True, True, True, True, False, False])
    lists = teacher_lists(Fixed(), examples, size=4, temperature=0.1, target_share=0.3, taught=taught)
    np.testing.assert_allclose(lists.weights.sum(1), 1.0, rtol=1e-5)
    assert list(lists.item_ids[0]) == [1, 2, 3, 4, -1] and lists.weights[0, 0] > lists.weights[0, 1] > lists.weights[0, 3]
    assert list(lists.item_ids[1]) == [1, 2, 3, 4, 500] and lists.weights[1, 4] == pytest.approx(0.3)
    assert list(lists.item_ids[5]) == [-1, -1, -1, -1, 500] and lists.weights[5, 4] == pytest.approx(1.0)
    assert lists.item_ids[4, 4] == 1 and lists.weights[4, 4] == pytest.approx(1.0)  # untaught: all on its target


def test_sasrec_teaches_through_the_encoder_and_the_serving_settings_travel(trained_run, small_world):
    """A run without SASRec names the command that trains it; with one, the distill phase reads
    its lists (cached under the teacher's name) and the aligned model serves with the config's
    `exclude_history` and `item_head_candidates`."""
    from genrec.baselines.sasrec import SASRecConfig, SASRecRetriever
    from genrec.model.retriever import GenerativeRetriever
    from genrec.sid.table import SidTable

    config = AlignConfig(**{**QUICK, "sft_steps": 0, "high_value_steps": 0, "grpo_steps": 0, "distill_steps": 2,
                            "teacher": "sasrec", "teacher_for": "all", "teacher_size": 5, "teacher_temperature": 1.0,
                            "distill_encoder": True, "exclude_history": True, "item_head_candidates": 3, "item_head_mix": 2.0, "head_mixes": ()})
    with pytest.raises(ValueError, match=r"SASRec, is missing.*--model sasrec"):
        align_generative(trained_run, config, resume=False)
    split = leave_one_out(small_world.dataset.events)
    SASRecRetriever.train(trained_run, small_world.dataset, split,
                          SASRecConfig(max_history=7, train=TrainConfig(steps=3, batch_size=16, eval_every=3,
                                                                         checkpoint_every=3, progress=False)))
    folder = align_generative(trained_run, config, resume=False)
    assert list((trained_run / "align" / "work").glob("teacher-sasrec-5-*.npz"))
    assert "distill" in json.loads((folder / "manifest.json").read_text())["result"]["phases"]
    saved = json.loads((folder / "config.json").read_text())["model"]
    assert (saved["exclude_history"], saved["item_head_candidates"], saved["item_head_mix"]) == (True, 3, 2.0)
    served = GenerativeRetriever.load(folder, SidTable.load(trained_run / "sid"))
    assert (served.exclude_history, served.item_head_candidates, served.item_head_mix) == (True, 3, 2.0)


def test_serving_settings_on_a_model_without_an_item_head_are_refused():
    from genrec.align.stage import serving_settings

    headless = GenerativeConfig(**TINY, item_head=False)
    with pytest.raises(ValueError, match="item_head_candidates needs the item head"):
        serving_settings(headless, AlignConfig(item_head_candidates=5))
    with pytest.raises(ValueError, match="item_head_mix needs a model with an item head"):
        serving_settings(headless, AlignConfig(item_head_mix=1.0))
    assert serving_settings(headless, AlignConfig(exclude_history=True)).exclude_history
    assert serving_settings(headless, AlignConfig()) == headless  # None keeps the trained model's
