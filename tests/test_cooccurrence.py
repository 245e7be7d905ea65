"""Item co-occurrence: the vectorised builder equals counting every pair by hand."""

import numpy as np
import pytest

from genrec.features.cooccurrence import windowed_cooccurrence


def _by_hand(users, items, n_slots, window, gap_weight, position_weight=None):
    co = np.zeros((n_slots, n_slots))
    for later in range(len(items)):
        for gap in range(1, window + 1):
            earlier = later - gap
            if earlier < 0 or users[earlier] != users[later] or items[earlier] == items[later]:
                continue
            w = gap_weight(gap) * (1.0 if position_weight is None else position_weight[later])
            co[items[earlier], items[later]] += w
            co[items[later], items[earlier]] += w
    count = np.maximum(np.bincount(items, minlength=n_slots), 1)
    return co / np.sqrt(np.outer(count, count))


@pytest.mark.parametrize("window", [1, 3])
def test_the_builder_equals_counting_every_pair_by_hand(window):
    rng = np.random.default_rng(0)
    users = np.sort(rng.integers(0, 6, 60))
    items = rng.integers(1, 12, 60)
    weight = rng.random(60)
    for gap_weight, position in ((lambda g: 1.0 / g, None), (lambda g: 0.7 ** (g - 1), weight)):
        fast = windowed_cooccurrence(users, items, 12, window, gap_weight, position).toarray()
        np.testing.assert_allclose(fast, _by_hand(users, items, 12, window, gap_weight, position), rtol=1e-12)
        np.testing.assert_allclose(fast, fast.T)
        assert not fast.diagonal().any()


def test_short_and_bad_inputs():
    assert windowed_cooccurrence(np.array([1]), np.array([3]), 5, 4, lambda g: 1.0).nnz == 0
    with pytest.raises(ValueError, match="items must be ids"):
        windowed_cooccurrence(np.array([1, 1]), np.array([3, 9]), 5, 2, lambda g: 1.0)
    with pytest.raises(ValueError, match="window"):
        windowed_cooccurrence(np.array([1, 1]), np.array([3, 4]), 5, 0, lambda g: 1.0)
