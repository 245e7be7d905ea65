"""`run_pipeline(run, config)`: every stage of a run in order, each reused when up to date.

data → statistics → embed → Semantic IDs → train the generative model → align it →
evaluate → table, plots and `report.md` in RUN/eval. Each stage is the same Python
function its CLI subcommand calls. A stage whose artefact is complete in the run
folder and was made with today's config, inputs and code is reused, so a second
run is quick, a crashed one resumes where it stopped, and changing one section of
the config re-makes that stage and the ones downstream of it (their input hashes
change), not the ones before it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from genrec.pipeline.config import SYNTH, DataConfig, EvalStageConfig, PipelineConfig

log = logging.getLogger(__name__)


@dataclass
class StageTimes:
    """Wall time per stage, in order, for the closing summary."""

    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, action: Callable[[], Any]) -> Any:
        log.info("== %s", name)
        start = time.perf_counter()
        result = action()
        self.seconds[name] = time.perf_counter() - start
        log.info("== %s: %.1fs", name, self.seconds[name])
        return result


def run_pipeline(run: str | Path, config: PipelineConfig | None = None, *, fresh: bool = False,
                 images: Path | None = None, command: str = "genrec run") -> StageTimes:
    """Run every stage of `config` in `run`; return the stage times. `fresh` deletes the run
    folder first. With `images`, the evaluation's plots are also copied there as
    `demo_recall_at_k.png` and `demo_slices.png` (the README's pictures, so they always show
    the table they sit beside)."""
    import shutil

    import torch

    config = config or PipelineConfig()
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    run = Path(run)
    if fresh and run.exists():
        shutil.rmtree(run)
    times = StageTimes()
    world = "generate the world" if config.data.loader == SYNTH else f"load {config.data.loader} data"
    times.run(world, lambda: _data(run, config.data))
    times.run("dataset statistics", lambda: _stats(run))
    times.run("embed items (MiniLM)", lambda: _embed(run, config))
    times.run(f"Semantic IDs ({_sid_title(config)})", lambda: _sids(run, config))
    if config.trains_generative:
        times.run("train the generative retriever", lambda: _generative(run, config))
    if config.trains_cascade:
        times.run("train the cascade (genrec cascade train)", lambda: _cascade(run, config))
    if config.aligns:
        times.run("align it: distil the cascade into it (genrec align)", lambda: _align(run, config))
    report = times.run(f"evaluate every retriever ({config.eval.part} split)", lambda: _evaluate(run, config.eval, command))

    from genrec.eval.report import print_report

    print_report(report)
    if images is not None:
        from genrec.eval.report import PLOTS_EXTRA, plots_available

        if not plots_available():
            raise ValueError(f"images: the README's pictures need matplotlib: {PLOTS_EXTRA}")
        images.mkdir(parents=True, exist_ok=True)
        for name in ("recall_at_k", "slices"):
            shutil.copyfile(run / "eval" / f"{name}.png", images / f"demo_{name}.png")
    total = sum(times.seconds.values())
    print("\nstage times: " + ", ".join(f"{name} {s:.0f}s" for name, s in times.seconds.items()))
    print(f"total: {total / 60:.1f} min — report: {run / 'eval' / 'report.md'}, plots: {run / 'eval'}")
    return times


def _complete(folder: Path, config: dict | None = None, inputs: dict[str, Path] | None = None,
              code: str | None = None) -> bool:
    """A stage's folder is reusable once its manifest exists (it is written last), was
    made with `config` (every key given must match the manifest's), from the current
    `inputs` (name → folder, compared by content hash) and, when `code` is given, by the
    current code (`artifacts.code_fingerprint`). A folder left by an older genrec, or
    built on SIDs that have since changed, is rebuilt rather than loaded into a model it
    no longer fits or reported as the current code's."""
    path = folder / "manifest.json"
    if not path.exists():
        return False
    import json

    from genrec.artifacts import folder_sha256

    recorded = json.loads(path.read_text())
    stale = [key for key, value in (config or {}).items()
             if _plain(_lookup(recorded.get("config", {}), key)) != _plain(value)]
    stale += [name for name, source in (inputs or {}).items()
              if recorded.get("inputs", {}).get(name) != (folder_sha256(source) if source.is_dir() else None)]
    if code is not None and recorded.get("code") != code:
        stale.append("code")
    if stale:
        log.info("%s was made with another %s; rebuilding it", folder, ", ".join(stale))
    return not stale


def _lookup(config: Any, key: str) -> Any:
    """`config[key]`, a dotted key reading into nested dicts ("model.d_model"); None if absent."""
    for part in key.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def _plain(value: Any) -> Any:
    """Tuples as lists, so a config compares equal to its JSON round trip."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _data(run: Path, config: DataConfig) -> None:
    if config.loader == SYNTH:
        _world(run, config)
    else:
        _load(run, config)


def _world(run: Path, config: DataConfig) -> None:
    from genrec.data.synth import generate_world

    if (run / "data" / "truth.npz").exists() and _complete(run / "data", asdict(config.world)):
        log.info("reusing %s", run / "data")
        return
    generate_world(config.world).save(run / "data")


def _load(run: Path, config: DataConfig) -> None:
    """A loader's dataset, reused while RUN/data records the same loader and source."""
    import json

    from genrec.data.loaders import LOADERS

    saved = run / "data" / "manifest.json"
    if saved.exists():
        recorded = json.loads(saved.read_text())
        if (recorded.get("format"), recorded.get("source")) == (config.loader, config.source):
            log.info("reusing %s", run / "data")
            return
    LOADERS[config.loader](config.source).save(run / "data", source=config.source, format=config.loader)


def _stats(run: Path) -> None:
    from genrec.data.dataset import Dataset
    from genrec.data.stats import dataset_stats, print_stats

    print_stats(dataset_stats(Dataset.load(run / "data")))


def _embed(run: Path, config: PipelineConfig) -> None:
    from genrec.features.embed import embed_run
    from genrec.sid.build import embed_config

    embed_run(run, embed_config(config.sid))


def _sid_title(config: PipelineConfig) -> str:
    prefix = " + ".join(config.sid.prefix)
    return f"{prefix + ' + ' if prefix else ''}{config.sid.method}, {config.sid.levels} level(s)"


def _sids(run: Path, config: PipelineConfig) -> None:
    from genrec.sid.build import build_sids

    made_with = {key: value for key, value in asdict(config.sid).items() if key != "device"}  # SIDs do not depend on it
    if _complete(run / "sid", made_with, {"data": run / "data"}):
        log.info("reusing %s", run / "sid")
        return
    build_sids(run, **asdict(config.sid))


def _generative(run: Path, config: PipelineConfig) -> None:
    from genrec.artifacts import code_fingerprint
    from genrec.model.retriever import GENERATIVE_CODE, MODEL_DIR
    from genrec.train.generative import train_generative

    wanted = config.train.to_dict()
    model = wanted.pop("model")  # what the data gives (the input spec) is checked by the inputs' hashes
    wanted.update({f"model.{key}": value for key, value in model.items()})
    if _complete(run.joinpath(*MODEL_DIR), wanted, {"sid": run / "sid", "data": run / "data"},
                 code=code_fingerprint(*GENERATIVE_CODE)):
        log.info("reusing %s", run.joinpath(*MODEL_DIR))
        return
    train_generative(run, config.train)


def _cascade(run: Path, config: PipelineConfig) -> None:
    """Train RUN/cascade/model with `config.cascade` unless one trained on this data, by this code and
    with these settings is saved; align and the evaluation then load it."""
    from genrec.cascade.retriever import train_if_stale
    from genrec.data.dataset import Dataset
    from genrec.data.splits import leave_one_out

    dataset = Dataset.load(run / "data")
    train_if_stale(run, dataset, leave_one_out(dataset.events), config.cascade)


def _align(run: Path, config: PipelineConfig) -> None:
    from genrec.align.stage import align_if_stale

    align_if_stale(run, config.align)  # the cascade (teacher and reward) is trained first when missing


def _evaluate(run: Path, config: EvalStageConfig, command: str) -> Any:
    from genrec.data.dataset import Dataset
    from genrec.data.splits import leave_one_out
    from genrec.eval.commands import run_evaluation
    from genrec.stages import train_missing

    dataset = Dataset.load(run / "data")
    train_missing(run, config.retrievers, dataset, leave_one_out(dataset.events))  # SASRec and the cascade, if missing
    return run_evaluation(run, list(config.retrievers), part=config.part, config=config.harness,
                          max_requests=config.max_requests, command=command)
