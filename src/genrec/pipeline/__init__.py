"""The whole pipeline from one config: `genrec run --config FILE --run RUN`.

    config = load_config(PipelineConfig, "configs/demo.yaml", ["train.train.steps=300"])
    run_pipeline("runs/mine", config)
"""

from genrec.pipeline.config import DataConfig, EvalStageConfig, PipelineConfig
from genrec.pipeline.run import run_pipeline

__all__ = ["DataConfig", "EvalStageConfig", "PipelineConfig", "run_pipeline"]
