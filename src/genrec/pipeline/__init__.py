"""The whole pipeline from one config: `genrec run --config FILE --run RUN`.

    config = load_config(PipelineConfig, "configs/demo.yaml", ["train.train.steps=300"])
    run_pipeline("runs/mine", config)

Both names are imported on first use: the config's sections (the model's, the
trainer's) import torch, which `genrec run --help` does not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from genrec.lazy import lazy_getattr

if TYPE_CHECKING:  # what the lazy names are, for type checkers
    from genrec.pipeline.config import DataConfig, EvalStageConfig, PipelineConfig
    from genrec.pipeline.run import run_pipeline

_LAZY: dict[str, str] = {
    "DataConfig": "genrec.pipeline.config",
    "EvalStageConfig": "genrec.pipeline.config",
    "PipelineConfig": "genrec.pipeline.config",
    "run_pipeline": "genrec.pipeline.run",
}
"""name → the module that defines it, imported when the name is first read."""

__all__ = ["DataConfig", "EvalStageConfig", "PipelineConfig", "run_pipeline"]


__getattr__ = lazy_getattr(__name__, _LAZY)
