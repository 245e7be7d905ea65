"""MiniLM and the cascade run where their `device` setting says, on any machine.

No GPU exists here or in CI, so a device that is not the CPU is either faked (torch is told a GPU
exists, and the test sees the setting reach the place that would move to it) or torch's `meta`
device, which every build has: a model that followed its setting lives there, and an input left
behind on the CPU would be a device-mismatch error instead of the meta device's own refusal.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cascade_toy import toy_dataset, toy_encode

from genrec.cascade.features import FeatureSpace
from genrec.cascade.rank import MultiTaskRanker, RankerConfig
from genrec.cascade.recall import PersonalizedDenseRecall, PersonalizedRecallConfig
from genrec.cascade.retriever import CascadeConfig
from genrec.cascade.samples import impression_samples
from genrec.config_file import load_config
from genrec.data.splits import leave_one_out
from genrec.device import check_device, resolve_device
from genrec.features import text as text_module
from genrec.features.embed import EmbedConfig
from genrec.features.text import encode_texts, item_text, load_text_encoder
from genrec.retrieval import Request
from genrec.sid.config import SidConfig


@pytest.fixture
def a_gpu_is_seen(monkeypatch):
    """torch reports a CUDA device (nothing is ever moved to it in these tests)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_auto_is_the_cpu_here_and_the_gpu_where_torch_sees_one(monkeypatch):
    assert not torch.cuda.is_available()  # the premise of every test here
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_a_bad_device_is_a_value_error_naming_the_field():
    for bad in ("gpu", "", "cuda:x", "CPU", None, 0):
        with pytest.raises(ValueError, match=r"CascadeConfig\.device must be 'auto' or a torch device"):
            check_device(bad, "CascadeConfig.device")
    with pytest.raises(ValueError, match="ranker.device is 'cuda' but torch sees no CUDA device"):
        resolve_device("cuda", "ranker.device")  # spelled right, but this machine has none
    for build in (lambda: EmbedConfig(device="gpu"), lambda: SidConfig(device="gpu"), lambda: CascadeConfig(device="gpu")):
        with pytest.raises(ValueError, match="^device must be .*got 'gpu'"):
            build()
    with pytest.raises(ValueError) as caught:
        load_config(CascadeConfig, None, ["device=gpu", "ranker.dim=8"])
    assert "device: device must be" in str(caught.value)
    with pytest.raises(ValueError, match="device must be"):
        encode_texts([], device="gpu")  # checked even when there is nothing to encode


class RecordingEncoder:
    """Stands in for `SentenceTransformer`: remembers the device it was built for."""

    built_on: list[str] = []
    paths: list[str] = []

    def __init__(self, path: str, device: str):
        self.device = torch.device(device)
        RecordingEncoder.built_on.append(device)
        RecordingEncoder.paths.append(path)

    def encode(self, texts, **options):
        return np.ones((len(texts), 384), dtype=np.float32)


@pytest.fixture
def recording_encoder(monkeypatch):
    import sentence_transformers

    text_module._text_encoder_on.cache_clear()
    RecordingEncoder.built_on, RecordingEncoder.paths = [], []
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", RecordingEncoder)
    yield RecordingEncoder
    text_module._text_encoder_on.cache_clear()  # the real MiniLM for the tests after


def test_minilm_is_loaded_on_the_device_it_is_given(recording_encoder, a_gpu_is_seen):
    assert load_text_encoder("cpu").device == torch.device("cpu")
    assert load_text_encoder("auto").device == torch.device("cuda")  # torch sees a GPU: auto takes it
    vectors = encode_texts(["red lamp"], progress=False, device="cuda:1")
    assert vectors.shape == (1, 384) and isinstance(vectors, np.ndarray)  # host memory whatever the device
    assert recording_encoder.built_on == ["cpu", "cuda", "cuda:1"]
    assert load_text_encoder("cuda") is load_text_encoder("auto")  # one encoder per device, not per spelling
    encode_texts(["red lamp"], progress=False, model="my/encoder")  # another encoder, by name, on the default cpu
    assert recording_encoder.built_on[-1] == "cpu" and recording_encoder.paths[-1] == "my/encoder"


def test_the_real_minilm_defaults_to_the_cpu():
    encoder = load_text_encoder()
    assert encoder.device == torch.device("cpu")
    assert all(p.device.type == "cpu" for p in encoder.parameters())


@pytest.fixture(scope="module")
def toy():
    dataset = toy_dataset(n_items=80, n_users=30, sessions=8)
    split = leave_one_out(dataset.events)
    texts = item_text(dataset.items)
    space = FeatureSpace(history_length=10).fit(
        dataset.items, split.train, dataset.items["item_id"].to_numpy(), toy_encode(texts), texts, toy_encode)
    return space, impression_samples(split.train, split.interactions, max_history=10)


def _placed(module: torch.nn.Module) -> set[str]:
    return {t.device.type for t in [*module.parameters(), *module.buffers()]}


def test_the_ranker_and_the_recall_train_and_score_on_the_cpu_they_are_given(toy):
    space, samples = toy
    ranker = MultiTaskRanker(space, RankerConfig(epochs=1, batch_size=256, progress=False), device="cpu").fit(samples)
    recall = PersonalizedDenseRecall(space, PersonalizedRecallConfig(epochs=1, batch_size=256, progress=False),
                                     device="cpu").fit(samples)
    assert ranker.device_ == recall.device_ == torch.device("cpu")
    assert _placed(ranker.model_) == _placed(recall.model_) == {"cpu"}
    probs = ranker.predict_proba(space.requests(samples.requests[:3]), np.zeros(4, np.int64), np.arange(1, 5))
    assert probs.shape == (4, 3) and np.isfinite(probs).all()
    assert len(recall.retrieve([Request(1, query="red lamp")], 5)[0]) == 5


def test_the_setting_reaches_the_training_loop(toy, monkeypatch, a_gpu_is_seen):
    """With a GPU in sight, "auto" trains both models there: the loop is told cuda."""
    space, samples = toy
    told = []

    def spy(model, loss, examples, collate, config, out_dir, **options):
        told.append(config.device)
        raise InterruptedError  # stop before anything would move to the missing GPU

    monkeypatch.setattr("genrec.train.loop.train", spy)
    for model in (MultiTaskRanker(space, RankerConfig(progress=False), device="auto"),
                  PersonalizedDenseRecall(space, PersonalizedRecallConfig(progress=False), device="auto")):
        with pytest.raises(InterruptedError):
            model.fit(samples)
    assert told == ["cuda", "cuda"]


def test_a_loaded_ranker_lives_and_scores_on_its_device(toy):
    """On `meta` every tensor the ranker makes must follow the model: one left on the CPU would raise a
    device mismatch; all of them there end in the meta device's refusal to hand back numbers."""
    space, samples = toy
    trained = MultiTaskRanker(space, RankerConfig(epochs=1, batch_size=256, progress=False)).fit(samples)
    moved = MultiTaskRanker(space, trained.config, device="meta").load_state_dict(trained.state_dict())
    assert moved.device_ == torch.device("meta") and _placed(moved.model_) == {"meta"}
    with pytest.raises(NotImplementedError, match="meta"):
        moved.predict_proba(space.requests(samples.requests[:2]), np.zeros(3, np.int64), np.arange(1, 4))
    recall = PersonalizedDenseRecall(space, PersonalizedRecallConfig(epochs=1, batch_size=256, progress=False)).fit(samples)
    with pytest.raises(NotImplementedError, match="meta"):  # indexing the catalogue on meta, then reading it back
        PersonalizedDenseRecall(space, recall.config, device="meta").load_state_dict(recall.state_dict())
    recall.model_.to("meta")
    recall.device_ = torch.device("meta")  # as a load on meta leaves it, past the catalogue index
    with pytest.raises(NotImplementedError, match="meta"):  # the request tower's inputs followed it
        recall.retrieve([Request(1, query="red lamp", history=(1, 2))], 5)
