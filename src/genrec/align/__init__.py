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
from genrec.align.stage import align_generative

__all__ = ["AlignConfig", "align_generative", "RewardSource", "RankerReward", "PARSReward", "PreferenceWeights",
           "MixedReward", "OracleUtility", "build_reward"]
