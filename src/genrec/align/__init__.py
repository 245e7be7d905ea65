"""Post-training: align a trained generative model with the ranker, the logs and a teacher.

`align_generative(run, AlignConfig())` reads RUN/train/generative and writes
RUN/align/generative, served as the retriever `generative-aligned`. See docs/align.md.
"""

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

__all__ = ["AlignConfig", "align_generative", "RewardSource", "RankerReward", "PARSReward", "PreferenceWeights",
           "MixedReward", "OracleUtility", "build_reward"]


def __getattr__(name: str):
    """`align_generative` on first use: the stage imports torch and the model, which `genrec align --help`
    and a config reader (`AlignConfig`) do not need."""
    if name == "align_generative":
        from genrec.align.stage import align_generative

        return align_generative
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
