"""Post-training: align a trained generative model with the ranker, the logs and a teacher.

`align_generative(run, AlignConfig())` reads RUN/train/generative and writes
RUN/align/generative, served as the retriever `generative-aligned`. See docs/align.md.
"""

from typing import TYPE_CHECKING

from genrec.align.config import AlignConfig
from genrec.align.rewards import (
    MixedReward,
    OracleUtility,
    PARSReward,
    PreferenceWeights,
    RankerReward,
    RewardSource,
    build_reward,
)
from genrec.lazy import lazy_getattr

if TYPE_CHECKING:  # what the lazy name is, for type checkers
    from genrec.align.stage import align_generative

__all__ = ["AlignConfig", "align_generative", "RewardSource", "RankerReward", "PARSReward", "PreferenceWeights",
           "MixedReward", "OracleUtility", "build_reward"]


__getattr__ = lazy_getattr(__name__, {"align_generative": "genrec.align.stage"})
"""`align_generative` on first use: the stage imports torch and the model, which `genrec align --help`
and a config reader (`AlignConfig`) do not need."""
