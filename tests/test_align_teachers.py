"""The pool teacher: the student's own candidates re-ranked by served score + mix × the teacher's log-probability."""

import numpy as np
import pytest

from genrec.align import AlignConfig
from genrec.align.teachers import PoolTeacher
from genrec.retrieval import Ranked, Request


class Served:
    """A student that serves items 5, 4, 3, 2 (best first) with log-probabilities."""

    def retrieve(self, requests, k):
        return [Ranked(np.array([5, 4, 3, 2])[:k], np.log([0.4, 0.3, 0.2, 0.1])[:k]) for _ in requests]


class Teacher:
    """A teacher that ranks items 1..6 in the opposite order and never ranks item 5."""

    def retrieve(self, requests, k):
        ids = np.array([1, 2, 3, 4, 6])
        return [Ranked(ids[:k], np.array([4.0, 3.0, 2.0, 1.0, 0.0])[:k]) for _ in requests]


def test_the_pool_teacher_ranks_the_students_candidates_by_the_sum_of_both_scores():
    requests = [Request(user_id=1, history=(7,))]
    [ranked] = PoolTeacher(Served(), Teacher(), mix=2.0, pool=4, n_slots=8).retrieve(requests, 3)
    scores = np.array([4.0, 3.0, 2.0, 1.0, 0.0])
    log_p = dict(zip([1, 2, 3, 4, 6], scores - np.logaddexp.reduce(scores)))
    served = dict(zip([5, 4, 3, 2], np.log([0.4, 0.3, 0.2, 0.1])))
    expected = sorted((served[i] + 2.0 * log_p[i], i) for i in (4, 3, 2))[::-1]  # 5: the teacher never ranks it
    assert list(ranked.item_ids) == [i for _, i in expected] == [2, 3, 4]  # the teacher's order won: mix 2
    np.testing.assert_allclose(ranked.scores, [s for s, _ in expected], rtol=1e-6)
    [alone] = PoolTeacher(Served(), Teacher(), mix=0.0, pool=4, n_slots=8).retrieve(requests, 3)
    assert list(alone.item_ids) == [4, 3, 2]  # mix 0: the student's own order (item 5 still dropped)


def test_pool_teacher_settings_are_checked():
    with pytest.raises(ValueError, match="mix must be ≥ 0"):
        PoolTeacher(Served(), Teacher(), mix=-1.0, pool=4, n_slots=8)
    with pytest.raises(ValueError, match="pool must be ≥ 1"):
        PoolTeacher(Served(), Teacher(), mix=1.0, pool=0, n_slots=8)
    with pytest.raises(ValueError, match="teacher='itemcf' needs teacher_pool_mix"):
        AlignConfig(teacher="itemcf")
    with pytest.raises(ValueError, match="teacher_pool_mix must be ≥ 0"):
        AlignConfig(teacher_pool_mix=-0.5)
    with pytest.raises(ValueError, match="teacher_pool must be ≥ 1"):
        AlignConfig(teacher_pool=0)
