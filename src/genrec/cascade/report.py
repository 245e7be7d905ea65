"""`genrec cascade eval`: how good is each stage, measured on data none of them trained on.

* Ranker — AUC and GAUC (per visit) of click, cart and order on the impressions
  logged *after* each user's training cut-off (the visits of the validation and test
  targets), every candidate scored at the same slot.
* Calibration — ECE and PCOC (Σ predicted / Σ observed), overall and per slice
  (search / recommendation, human / AI-generated items, users without history),
  raw and after each calibrator (isotonic, UMC) fitted on the training hold-out;
  a reliability diagram of P(click).
* Fusion — NDCG@10 of each visit's impressions ordered by each fusion method,
  judged on orders and on clicks.
* End to end — Recall@10 / NDCG@10 of the whole cascade on the test split (search
  and recommendation), with the recall ceiling (target among the candidates), each
  fusion method and the post-rank policies.

Writes RUN/cascade/report.md, report.json and reliability.png.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from genrec.artifacts import write_json_atomic, write_text_atomic
from genrec.cascade.calibrate import (
    IsotonicCalibrator,
    UMCCalibrator,
    expected_calibration_error,
    pcoc,
    reliability_diagram,
)
from genrec.cascade.rerank import PostRankConfig
from genrec.cascade.retriever import (
    FUSIONS,
    CascadeModel,
    CascadeRetriever,
    TextEncoder,
    fusion_context,
    load_cascade,
    recall_sources,
    split_by_time,
    training_windows,
)
from genrec.cascade.samples import TASKS, ImpressionSamples, impression_samples
from genrec.data.dataset import Dataset
from genrec.data.splits import Split, build_requests, leave_one_out
from genrec.eval.metrics import auc, gauc, ndcg_at_k, ranked_matrix, recall_at_k

log = logging.getLogger(__name__)

K = 10


def evaluate_cascade(run: str | Path, dataset: Dataset | None = None, split: Split | None = None,
                     encoder: TextEncoder | None = None, sources: dict | None = None, max_requests: int | None = None,
                     copy_png_to: Path | None = None, progress: bool = True) -> dict:
    """Measure every stage of the cascade saved in RUN/cascade/model; returns the numbers written to report.json."""
    run = Path(run)
    began = time.perf_counter()
    level = logging.INFO if progress else logging.DEBUG

    def say(message: str) -> None:
        log.log(level, "[cascade eval %5.1fs] %s", time.perf_counter() - began, message)

    dataset = dataset if dataset is not None else Dataset.load(run / "data")
    split = split if split is not None else leave_one_out(dataset.events)
    model = load_cascade(run, encoder)
    out = run / "cascade"

    say("scoring the training hold-out and the impressions after the training cut-off")
    _, holdout, _ = training_windows(impression_samples(split.train, split.interactions, model.config.history_length), model.config)
    holdout_probs = _predict(model, holdout, model.holdout_space)
    heldout = impression_samples(events_after_cutoff(dataset.events, split), split.interactions, model.config.history_length)
    probs = _predict(model, heldout)
    results: dict = {"ranker": ranker_table(holdout_probs, holdout, "training hold-out (recent visits)")
                     + ranker_table(probs, heldout, "after cut-off (target visits)")}

    say("calibrators: fitted on the early half of the hold-out, measured on the late half")
    early, late = split_by_time(holdout, 0.5)
    results["calibration"], curves = calibration_table(
        model, _predict(model, late, model.holdout_space), late, _predict(model, early, model.holdout_space), early)
    from genrec.eval.report import PLOTS_EXTRA, plots_available

    if not plots_available():
        log.warning("no reliability.png without matplotlib: %s", PLOTS_EXTRA)
        if copy_png_to is not None:
            raise ValueError(f"copy_png_to needs the reliability diagram, which needs matplotlib: {PLOTS_EXTRA}")
    else:
        reliability_diagram(curves, out / "reliability.png", title="P(click) reliability, late hold-out visits")
    if copy_png_to is not None:
        copy_png_to.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "reliability.png", copy_png_to)

    say("fusion methods on each visit's impressions")
    results["fusion"] = fusion_table(model, probs, heldout)

    say("end to end on the test split")
    sources = sources if sources is not None else recall_sources(run, dataset, split, model.config)
    results["end_to_end"] = end_to_end_table(model, sources, split, max_requests, say)
    results["seconds"] = time.perf_counter() - began
    write_json_atomic(out / "report.json", results)
    write_text_atomic(out / "report.md", render_markdown(results, run))
    say(f"wrote {out / 'report.md'}")
    return results


def events_after_cutoff(events: pd.DataFrame, split: Split) -> pd.DataFrame:
    """Events at or after each user's first held-out target: what `split.train` leaves out."""
    held = np.r_[split.valid["user_id"].to_numpy(), split.test["user_id"].to_numpy()]
    times = np.r_[split.valid["ts"].to_numpy(), split.test["ts"].to_numpy()]
    cutoff = pd.Series(times).groupby(held).min()
    limit = events["user_id"].map(cutoff).to_numpy(dtype=np.float64)
    return events[events["ts"].to_numpy() >= np.nan_to_num(limit, nan=np.inf)].reset_index(drop=True)


def _predict(model: CascadeModel, samples: ImpressionSamples, space=None) -> np.ndarray:
    """Ranker probabilities `[p, 3]`, with item statistics from `space` (default: the model's)."""
    space = space or model.space
    model.ranker.use_space(space)
    try:
        return model.ranker.predict_proba(space.requests(samples.requests), samples.request_index, samples.item_ids)
    finally:
        model.ranker.use_space(model.space)


def ranker_table(probs: np.ndarray, samples: ImpressionSamples, where: str) -> list[dict]:
    rows = []
    for t, task in enumerate(TASKS):
        y = samples.labels[:, t]
        rows.append({"impressions": where, "task": task, "rows": int(len(y)), "positives": int(y.sum()), "auc": auc(probs[:, t], y),
                     "gauc": gauc(samples.request_index, probs[:, t], y)})
    return rows


def calibration_table(model, probs, samples, calibration_probs, calibration_set):
    req = model.space.requests(samples.requests)
    slices = {
        "all": np.ones(len(samples), dtype=bool),
        "search": req.is_search[samples.request_index] > 0,
        "recommendation": req.is_search[samples.request_index] == 0,
        "human items": ~model.space.is_ai_[samples.item_ids],
        "AI-generated items": model.space.is_ai_[samples.item_ids],
        "users without history": (req.history[samples.request_index] > 0).sum(1) == 0,
    }
    rows, curves = [], {}
    for t, task in enumerate(TASKS):
        y = samples.labels[:, t]
        fitted = {
            "raw": probs[:, t],
            "isotonic": IsotonicCalibrator().fit(calibration_probs[:, t], calibration_set.labels[:, t]).predict(probs[:, t]),
            "umc": UMCCalibrator(model.config.umc).fit(calibration_probs[:, t], calibration_set.labels[:, t]).predict(probs[:, t]),
        }
        for name, p in fitted.items():
            row = {"task": task, "calibrator": name, "ece": expected_calibration_error(p, y),
                   "auc": auc(p, y)}
            for slice_name, mask in slices.items():
                row[f"pcoc {slice_name}"] = pcoc(p[mask], y[mask]) if mask.any() else float("nan")
            rows.append(row)
            if task == "click":
                curves[name] = (p, y)
    return rows, curves


def fusion_table(model: CascadeModel, probs: np.ndarray, samples: ImpressionSamples) -> list[dict]:
    context = fusion_context(model.space.requests(samples.requests))[samples.request_index]
    rows = []
    for name in FUSIONS:
        score = model.fusions[name].score(probs, context)
        row: dict[str, str | float] = {"fusion": name}
        for t, task in ((2, "order"), (0, "click")):
            ranked, judged = visit_lists(score, samples, samples.labels[:, t])
            row[f"ndcg@10 {task}"] = ndcg_at_k(ranked, judged, K).mean
            row[f"visits {task}"] = len(judged)
        rows.append(row)
    return rows


def visit_lists(score, samples, label):
    """Each visit with a positive: its impressions ordered by `score` `[v, K]`, relevance `{item: 1}`."""
    order = np.lexsort((-score, samples.request_index))
    r, items, y = samples.request_index[order], samples.item_ids[order], label[order]
    starts = np.r_[0, np.flatnonzero(np.diff(r)) + 1]
    ranked, judged = [], []
    for begin, end in zip(starts, np.r_[starts[1:], len(r)]):
        if y[begin:end].any():
            ranked.append(items[begin:end])
            judged.append({int(i): 1.0 for i in items[begin:end][y[begin:end] > 0]})
    return ranked_matrix(ranked, K), judged


def end_to_end_table(model: CascadeModel, sources: dict, split: Split, max_requests: int | None, say) -> list[dict]:
    requests, targets = build_requests(split, "test")
    if max_requests is not None and len(requests) > max_requests:
        keep = np.sort(np.random.default_rng(0).choice(len(requests), max_requests, replace=False))
        requests, targets = [requests[i] for i in keep], targets[keep]
    is_search = np.asarray([r.is_search for r in requests])
    retriever = CascadeRetriever(model, sources)
    say(f"{len(requests)} test requests: recall + ranking")
    ranked_candidates = retriever.rank_candidates(requests)
    scored = retriever.fuse(ranked_candidates, model.config.fusion)
    in_candidates = np.asarray([t in set(ids.tolist()) for (ids, _, _), t in zip(scored, targets)])
    rows: list[dict[str, str | float]] = []
    variants = [(f"cascade ({f} fusion)", f, PostRankConfig()) for f in FUSIONS]
    variants += [("cascade + MMR 0.8", model.config.fusion, PostRankConfig(mmr_trade_off=0.8)),
                 ("cascade + AI share ≤ 30%", model.config.fusion, PostRankConfig(ai_max_share=0.3))]
    for label, fusion, postrank in variants:
        variant = CascadeRetriever(replace(model, config=replace(model.config, postrank=postrank)), {}, fusion)
        answers = _finish(variant, retriever.fuse(ranked_candidates, fusion), K)
        ranked = ranked_matrix(answers, K)
        row: dict[str, str | float] = {"retriever": label}
        for name, mask in (("all", np.ones(len(requests), bool)), ("search", is_search), ("recommendation", ~is_search)):
            row[f"recall@10 {name}"] = recall_at_k(ranked[mask], targets[mask], K).mean if mask.any() else float("nan")
            row[f"ndcg@10 {name}"] = ndcg_at_k(ranked[mask], targets[mask], K).mean if mask.any() else float("nan")
        ai = model.space.is_ai_[np.clip(ranked, 0, None)] & (ranked > 0)
        row["ai share of top 10"] = float(ai.sum() / max((ranked > 0).sum(), 1))
        rows.append(row)
    rows.append({"retriever": "recall ceiling (target among candidates)",
                 "recall@10 all": float(in_candidates.mean()),
                 "recall@10 search": float(in_candidates[is_search].mean()) if is_search.any() else float("nan"),
                 "recall@10 recommendation": float(in_candidates[~is_search].mean()) if (~is_search).any() else float("nan"),
                 "candidates per request": float(np.mean([len(ids) for ids, _, _ in scored]))})
    return rows


def _finish(retriever: CascadeRetriever, scored, k: int):
    """`retrieve`'s sort + post-rank on already scored candidates (scoring once for several policies)."""
    from genrec.retrieval import Ranked

    answers = []
    for item_ids, score, calibrated in scored:
        order = np.lexsort((-score, -calibrated))
        ids, _ = retriever.postrank(item_ids[order], calibrated[order], k)
        probability = dict(zip(item_ids.tolist(), calibrated.tolist()))
        values = np.minimum.accumulate(np.asarray([probability[i] for i in ids.tolist()], dtype=np.float32)) \
            if len(ids) else np.zeros(0, np.float32)
        answers.append(Ranked(ids, values))
    return answers


def render_markdown(results: dict, run: Path) -> str:
    lines = [f"# Cascade report — `{run}`", "",
             f"Reproduce: `genrec cascade train --run {run} && genrec cascade eval --run {run}`", "",
             "## Ranker (every candidate scored at the same slot; GAUC per visit)", "",
             "The training hold-out is the most recent visits of split.train, unseen by the ranker; the visits after "
             "the cut-off are those of the validation and test targets (so richer in clicks).", ""]
    lines += _table(results["ranker"], ["impressions", "task", "rows", "positives", "auc", "gauc"])
    lines += ["", "## Calibration (fitted on the early half of the hold-out, measured on the late half; "
              "PCOC = Σ predicted / Σ observed)", ""]
    calibration_columns = ["task", "calibrator", "ece", "auc"] + [c for c in results["calibration"][0] if c.startswith("pcoc")]
    lines += _table(results["calibration"], calibration_columns)
    lines += ["", "![reliability](reliability.png)", "", "## Fusion (impressions of each visit after the cut-off, NDCG@10)", ""]
    lines += _table(results["fusion"], ["fusion", "ndcg@10 order", "ndcg@10 click", "visits order", "visits click"])
    lines += ["", "## End to end (test split, leave-one-out, k = 10)", ""]
    columns = ["retriever"] + [f"{m}@10 {s}" for s in ("all", "search", "recommendation") for m in ("recall", "ndcg")]
    lines += _table(results["end_to_end"], columns + ["ai share of top 10", "candidates per request"])
    lines += ["", f"Evaluation took {results['seconds']:.0f} s.", ""]
    return "\n".join(lines)


def _table(rows: list[dict], columns: list[str]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c, "")
            cells.append(f"{value:.4f}" if isinstance(value, float) else str(value))
        out.append("| " + " | ".join(cells) + " |")
    return out
