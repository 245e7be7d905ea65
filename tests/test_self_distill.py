"""Self-distillation (`genrec.model.thoughts`, `genrec.model.self_distill`): a query's thought is its
nearest items' category path and brand; the teacher and the student are one set of weights whose
KL moves only the student; the served model never reads a thought."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from genrec.model import EncoderBatch, GenerativeConfig, GenerativeModel, InputSpec
from genrec.model.self_distill import _kl, self_distillation_loss
from genrec.model.thoughts import THOUGHT_SEPARATOR, QueryThoughts, ThoughtfulRetriever
from genrec.retrieval import Ranked, Request

CONFIG = GenerativeConfig(item_head=False, d_model=32, n_heads=4, d_ff=48, dropout=0.0, copy_recent=0, self_distill=1.0)
SPEC = InputSpec(codebook_sizes=(9, 5, 4), query_vocab_size=50, user_vocab_size=20, context_vocab_size=100)


def _catalogue():
    """Six items on three axes: two shirts of Fenico, one of Acme, three pans (no brand)."""
    items = pd.DataFrame({
        "item_id": [1, 2, 3, 4, 5, 6],
        "category": [["Clothing", "Tops", "T-Shirts"]] * 3 + [["Home", "Kitchen", "Pans"]] * 3,
        "brand": ["Fenico", "Fenico", "Acme", None, None, None],
    })
    vectors = np.array([[1, 0, 0], [1, 0.1, 0], [1, 0, 0.1], [0, 1, 0], [0, 1, 0.1], [0.1, 1, 0]], np.float32)
    encode = {"tee": [1, 0, 0], "frying pan": [0, 1, 0]}
    return items, vectors, lambda texts: np.array([encode[t] for t in texts], np.float32)


def test_a_thought_is_the_nearest_items_category_path_coarse_to_fine_then_their_brand():
    items, vectors, encode = _catalogue()
    thoughts = QueryThoughts.build(items, items["item_id"].to_numpy(), vectors, encode, neighbours=3)
    assert thoughts.thoughts(["tee", "frying pan"]) == ["Clothing Tops T-Shirts Fenico", "Home Kitchen Pans"]
    thoughts.brand_share = 0.7  # 2 of 3 neighbours are Fenico: below the share, no brand
    assert thoughts.thoughts(["tee"]) == ["Clothing Tops T-Shirts"]


def test_augment_rewrites_searches_only_and_the_teacher_retriever_passes_them_on():
    items, vectors, encode = _catalogue()
    thoughts = QueryThoughts.build(items, items["item_id"].to_numpy(), vectors, encode, neighbours=3)
    requests = [Request(1, query="tee"), Request(2), Request(3, query="frying pan")]
    augmented = thoughts.augment(requests)
    assert [r.query for r in augmented] == [f"tee{THOUGHT_SEPARATOR}Clothing Tops T-Shirts Fenico", None,
                                            f"frying pan{THOUGHT_SEPARATOR}Home Kitchen Pans"]
    assert augmented[1] is requests[1]

    class Echo:
        name = "echo"
        seen: list = []

        def retrieve(self, rs, k):
            self.seen.extend(r.query for r in rs)
            return [Ranked(np.array([1]))] * len(rs)

    teacher = ThoughtfulRetriever(Echo(), thoughts)
    assert teacher.name == "echo-teacher" and len(teacher.retrieve(requests, 10)) == 3
    assert Echo.seen == [r.query for r in augmented]


def test_thoughts_refuse_misaligned_tables():
    items, vectors, encode = _catalogue()
    with pytest.raises(ValueError, match="one of each per item"):
        QueryThoughts(vectors, np.array(["a"], dtype=object), np.array(["b"], dtype=object), encode)


def _model_and_batches():
    torch.manual_seed(0)
    model = GenerativeModel(CONFIG, SPEC)
    with torch.no_grad():  # away from the init's near-uniform outputs, so the query matters
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    student = EncoderBatch.random(SPEC, 8, torch.Generator().manual_seed(1))
    teacher = replace(student, query=torch.randint(2, SPEC.query_vocab_size, student.query.shape,
                                                   generator=torch.Generator().manual_seed(2)))
    codes = torch.stack([torch.randint(0, v, (8,), generator=torch.Generator().manual_seed(3 + i))
                         for i, v in enumerate(SPEC.codebook_sizes)], 1)
    return model, student, teacher, codes


def test_with_the_same_input_on_both_sides_the_loss_is_the_models_own():
    model, student, _, codes = _model_and_batches()
    model.eval()  # no dropout: the two forwards are the same computation
    torch.testing.assert_close(self_distillation_loss(model, student, student, codes, None, weight=3.0),
                               model.loss(student, codes))


def test_the_kl_moves_only_the_student_side():
    teacher = torch.randn(4, 7, requires_grad=True)
    student = torch.randn(4, 7, requires_grad=True)
    _kl(teacher, student).backward()
    assert teacher.grad is None and student.grad is not None and student.grad.abs().sum() > 0
    assert float(_kl(student.detach(), student.detach())) == pytest.approx(0.0, abs=1e-6)


def test_distillation_pulls_the_students_distribution_toward_the_teachers():
    """One set of weights: training the KL alone (no target loss) must shrink it, and the
    student's level-0 distribution must come to agree with the teacher's."""
    model, student, teacher, codes = _model_and_batches()
    model.eval()

    def kl_now() -> float:
        with torch.no_grad():
            s = model.teacher_forced(student, codes).logits
            t = model.teacher_forced(teacher, codes).logits
            return float(sum(_kl(a, b) for a, b in zip(t, s)))

    before = kl_now()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        optimizer.zero_grad()
        loss = (self_distillation_loss(model, student, teacher, codes, None, weight=1.0)
                - self_distillation_loss(model, student, teacher, codes, None, weight=0.0))  # the KL term alone
        loss.backward()
        optimizer.step()
    assert before > 0.05 and kl_now() < 0.2 * before


def test_self_distillation_needs_a_search_model():
    with pytest.raises(ValueError, match="self_distill needs tasks='search\\+recommendation'"):
        GenerativeConfig(tasks="recommendation", self_distill=1.0)
    with pytest.raises(ValueError, match="self_distill must be ≥ 0"):
        GenerativeConfig(self_distill=-1.0)


def test_training_reads_each_search_twice_and_the_served_model_is_one_set_of_weights(small_sid_run):
    """The teacher rows are the same searches (same targets) with a thought after the query; the saved
    model has exactly the parameters of a model trained without self-distillation, and the served
    retriever encodes the raw query."""
    from genrec.data.dataset import Dataset
    from genrec.data.splits import leave_one_out
    from genrec.model.retriever import GenerativeRetriever
    from genrec.train.generative import GenerativeTrainConfig, load_sid_table, prepare_training, train_generative
    from genrec.train.loop import TrainConfig

    model = GenerativeConfig(item_head=False, d_model=32, n_heads=2, d_ff=64, dropout=0.0, n_encoder_layers=1,
                             n_decoder_layers=1, max_short=4, max_long=4, self_distill=1.0)
    config = GenerativeTrainConfig(model=model, valid_requests=20, beams=5, train=TrainConfig(
        steps=2, batch_size=32, eval_every=2, checkpoint_every=2, warmup_steps=1, progress=False, device="cpu"))
    dataset = Dataset.load(small_sid_run / "data")
    prepared = prepare_training(small_sid_run, config, dataset, leave_one_out(dataset.events),
                                load_sid_table(small_sid_run), progress=False)
    table = prepared.examples
    assert table.teacher is not None and len(table.teacher) == table.n_requests
    assert torch.equal(table.teacher.codes, table.requests.codes)
    differs = (table.teacher.batch.query != table.requests.batch.query).any(dim=1)
    assert differs.float().mean() > 0.5  # most searches got a thought (longer query tokens)

    folder = train_generative(small_sid_run, config, progress=False)
    served = GenerativeRetriever.from_run(small_sid_run)
    plain = GenerativeModel(replace(model, self_distill=0.0), served.model.spec)
    assert {k: v.shape for k, v in served.model.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    seen = []
    transform = served.encoder.transform
    served.encoder.transform = lambda requests: seen.extend(r.query for r in requests) or transform(requests)
    served.retrieve([Request(1, query="red shirt"), Request(2)], 5)
    assert seen == ["red shirt", None] and folder.exists()


def test_each_distinct_query_is_encoded_once_and_repeats_get_the_same_thought():
    items, vectors, encode = _catalogue()
    asked: list[str] = []
    thoughts = QueryThoughts.build(items, items["item_id"].to_numpy(), vectors,
                                   lambda texts: asked.extend(texts) or encode(texts), neighbours=3)
    out = thoughts.thoughts(["tee", "frying pan", "tee", "tee"])
    assert out == ["Clothing Tops T-Shirts Fenico", "Home Kitchen Pans"] + ["Clothing Tops T-Shirts Fenico"] * 2
    assert asked == ["tee", "frying pan"]
