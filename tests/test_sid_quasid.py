"""QuaSID's plug-in losses: repulsion of colliding codes, benign-pair masking, co-occurrence contrast."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrec import cli
from genrec.features import item_vectors as item_vectors_module
from genrec.sid import RQVAETokenizer, SidTable, build_sids, sid_report
from genrec.sid.quasid import benign_groups, colliding_pairs, cooccurrence_contrastive, hamming_margin_repulsion
from tests.test_sid import clustered_vectors, fake_text_encoder, tiny_run
from tests.test_sid_collaborative import run_with_histories


def _pair(codes_a, codes_b, distance=0.1):
    latent_a = torch.zeros(len(codes_a), 4, requires_grad=True)
    latent_b = torch.zeros(len(codes_a), 4)
    latent_b[:, 0] = distance
    return latent_a, latent_b, torch.tensor(codes_a), torch.tensor(codes_b)


def test_repulsion_is_zero_for_pairs_that_do_not_collide():
    a, b, ca, cb = _pair([[0, 1, 2, 3], [0, 1, 2, 3]], [[0, 1, 5, 6], [9, 9, 9, 9]])  # 2 and 4 codes differ
    loss = hamming_margin_repulsion(a, b, ca, cb, max_differing=1, margin=1.0)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.count_nonzero(a.grad) == 0


def test_repulsion_grows_with_overlap_and_vanishes_beyond_the_margin():
    losses = []
    for differing in (2, 1, 0):
        codes_b = [[0, 1, 2, 3][: 4 - differing] + [7] * differing]
        a, b, ca, cb = _pair([[0, 1, 2, 3]], codes_b)
        losses.append(hamming_margin_repulsion(a, b, ca, cb, max_differing=2, margin=1.0).item())
    assert 0 < losses[0] < losses[1] < losses[2]
    a, b, ca, cb = _pair([[0, 1, 2, 3]], [[0, 1, 2, 3]], distance=1.5)  # already farther apart than the margin
    assert hamming_margin_repulsion(a, b, ca, cb, max_differing=0, margin=1.0).item() == 0.0


def test_masked_benign_pairs_get_no_gradient_while_the_others_are_pushed_apart():
    a, b, ca, cb = _pair([[1, 2], [1, 2]], [[1, 2], [1, 2]])  # both pairs fully collide
    loss = hamming_margin_repulsion(a, b, ca, cb, max_differing=0, margin=1.0, valid=torch.tensor([False, True]))
    loss.backward()
    assert torch.count_nonzero(a.grad[0]) == 0
    assert a.grad[1, 0] > 0  # descending moves a away from b (b sits at +x)
    a, b, ca, cb = _pair([[1, 2]], [[1, 2]])
    only_masked = hamming_margin_repulsion(a, b, ca, cb, max_differing=0, margin=1.0, valid=torch.tensor([False]))
    only_masked.backward()
    assert only_masked.item() == 0.0 and torch.count_nonzero(a.grad) == 0


def test_contrastive_loss_prefers_matched_towers():
    torch.manual_seed(0)
    towers = torch.randn(8, 16)
    matched = cooccurrence_contrastive(towers, towers + 0.01 * torch.randn(8, 16), temperature=0.1)
    shuffled = cooccurrence_contrastive(towers, towers[torch.randperm(8)], temperature=0.1)
    assert matched.item() < 0.05 < shuffled.item()


def test_colliding_pairs_finds_exactly_the_pairs_within_the_hamming_radius():
    codes = np.array([[0, 0, 0], [0, 0, 0], [0, 0, 1], [0, 1, 1], [5, 5, 5]])
    rng = np.random.default_rng(0)
    assert colliding_pairs(codes, 0, rng).tolist() == [[0, 1]]
    assert colliding_pairs(codes, 1, rng).tolist() == [[0, 1], [0, 2], [1, 2], [2, 3]]


def test_benign_groups_join_titles_equal_up_to_case_punctuation_and_spaces():
    groups = benign_groups(["Rose Oil, 30ml", "rose oil 30ML", "Rose Oil 50ml", None, None])
    assert groups[0] == groups[1] != groups[2]
    assert groups[3] != groups[4]


def test_repulsion_lowers_rqvae_collisions_on_a_crowded_catalog():
    vectors, _ = clustered_vectors(n=300, clusters=6, dim=16, spread=0.05, seed=3)  # 6 tight clumps on 16 × 16 codes
    params = dict(levels=2, codebook_size=16, epochs=25, seed=0, spread_last_level=False)
    plain = RQVAETokenizer(**params).fit(vectors)
    repelled = RQVAETokenizer(**params, repulsion_weight=5.0, repulsion_max_differing=0).fit(vectors)
    before = sid_report(plain.transform(vectors), 2)
    after = sid_report(repelled.transform(vectors), 2)
    assert after["collision_rate"] < before["collision_rate"]
    assert after["leaf_prefixes"] > before["leaf_prefixes"]
    assert plain.colliding_pairs_ == [] and len(repelled.colliding_pairs_) == 25 and min(repelled.colliding_pairs_) > 0


def test_bad_method_names_and_incompatible_options_name_the_option(tmp_path, monkeypatch):
    monkeypatch.setattr(item_vectors_module, "encode_texts", fake_text_encoder)
    run = tiny_run(tmp_path)
    with pytest.raises(ValueError, match="method"):
        build_sids(run, method="quasid")
    with pytest.raises(ValueError, match="repulsion_weight.*method='rqvae'"):
        build_sids(run, method="rqkmeans", repulsion_weight=1.0)
    with pytest.raises(ValueError, match="contrastive_weight.*method='rqvae'"):
        build_sids(run, method="rqkmeans", contrastive_weight=1.0)
    with pytest.raises(ValueError, match="repulsion_weight"):
        build_sids(run, method="rqvae", repulsion_weight=-1.0)
    vectors, _ = clustered_vectors(n=40)
    with pytest.raises(ValueError, match="contrastive_weight"):
        RQVAETokenizer(epochs=1, contrastive_weight=1.0).fit(vectors)  # no positive pairs to contrast
    with pytest.raises(ValueError, match="benign"):
        RQVAETokenizer(epochs=1).fit(vectors, benign=np.arange(40))  # a mask for a loss that is off
    with pytest.raises(ValueError, match="repulsion_max_differing"):
        RQVAETokenizer(levels=2, epochs=1, repulsion_weight=1.0, repulsion_max_differing=2).fit(vectors)
    with pytest.raises(SystemExit):
        cli.main(["sid", "--run", str(run), "--method", "quasid"])


def test_build_sids_trains_rqvae_with_both_losses_and_keeps_codes_unique(tmp_path, monkeypatch):
    monkeypatch.setattr(item_vectors_module, "encode_texts", fake_text_encoder)
    run = run_with_histories(tmp_path)
    assert cli.main(["sid", "--run", str(run), "--method", "rqvae", "--levels", "2", "--epochs", "3",
                     "--repulsion-weight", "1", "--contrastive-weight", "0.5"]) == 0
    table = SidTable.load(run / "sid")
    assert len(np.unique(table.codes, axis=0)) == len(table) == 120
    tokenizer = RQVAETokenizer.load(run / "sid" / "tokenizer.npz")
    assert tokenizer.repulsion_weight == 1.0 and tokenizer.contrastive_weight == 0.5
    assert len(tokenizer.colliding_pairs_) == 3
