"""`align_generative(run)`: post-train RUN/train/generative into RUN/align/generative.

    folder = align_generative(run)          # RUN/align/generative/{best.pt, config.json, encoder.json, manifest.json}

The aligned folder has the trained model's layout, so `GenerativeRetriever.load`
reads it and the aligned model serves exactly like the unaligned one (no ranker
at inference). The phases (`AlignConfig`) run through the one training loop
(`genrec.train.loop.train`), each in RUN/align/work/<phase>/ with its own
checkpoints: an interrupted run resumes inside the phase it stopped in, and a
finished phase is never run twice. The aligned folder is written last, file by
file atomically, its manifest after everything else.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from genrec.align.config import PHASES, AlignConfig
from genrec.align.examples import TeacherLists, align_examples, teacher_lists
from genrec.align.head_mix import choose_search_scoring
from genrec.align.phases import AlignmentContext, distillation_loss, grpo_rollout_loss, sft_loss
from genrec.align.policy import CodeBook
from genrec.align.rewards import OracleUtility, PARSReward, PreferenceWeights, RankerReward, build_reward
from genrec.align.teachers import load_teacher
from genrec.artifacts import atomic_path, code_fingerprint, folder_sha256, manifest, write_json_atomic
from genrec.cascade.retriever import CascadeRetriever
from genrec.data.dataset import Dataset
from genrec.data.splits import Split, build_requests, leave_one_out
from genrec.eval.metrics import ndcg_at_k, ranked_matrix, recall_at_k
from genrec.features import item_text
from genrec.model.keywords import FILE as KEYWORDS_FILE
from genrec.model.keywords import KeywordIndex
from genrec.model.retriever import GenerativeRetriever
from genrec.train.loop import LAST_CHECKPOINT, TrainConfig, load_best, train

log = logging.getLogger(__name__)

BASE_DIR = ("train", "generative")
ALIGNED_DIR = ("align", "generative")
WORK_DIR = ("align", "work")
ALIGN_CODE: tuple[str, ...] = ("genrec.align",)
HIGH_VALUE_ACTIONS = ("cart", "order")


def align_generative(run: str | Path, config: AlignConfig | None = None, *, dataset: Dataset | None = None,
                     split: Split | None = None, sids: Any = None, resume: bool = True) -> Path:
    """Post-train the generative model of `run`; write RUN/align/generative; return that folder.

    `resume=False` discards RUN/align/work first (a fresh run). Raises ValueError naming
    what is missing when there is no trained model, no SID table, or no cascade for a
    reward or teacher that needs one.
    """
    run = Path(run)
    config = config or AlignConfig()
    base = run.joinpath(*BASE_DIR)
    if not (base / "manifest.json").exists():
        raise ValueError(f"align needs a trained generative model at {base} (no manifest.json there); "
                         f"make it with: genrec train --run {run} --model generative")
    sids = sids if sids is not None else _sid_table(run)
    dataset = dataset if dataset is not None else Dataset.load(run / "data")
    split = split if split is not None else leave_one_out(dataset.events)
    work = run.joinpath(*WORK_DIR)
    if not resume and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    _check_same_run(work, config, folder_sha256(base))
    say = _reporter(config.progress)
    torch.manual_seed(config.seed)

    retriever = GenerativeRetriever.load(base, sids, beams=config.beams)
    model, encoder, trie = retriever.model, retriever.encoder, retriever.trie
    model.config = serving_settings(model.config, config)
    codebook = CodeBook(sids.item_ids, sids.codes)
    examples = align_examples(split, config.per_user, limit=config.max_examples, seed=config.seed)
    examples = examples.subset(np.flatnonzero(codebook.has(examples.targets)))
    weights = PreferenceWeights().fit(split.train)
    pars = PARSReward.from_events(split.train, examples.visits(), weights)
    cascade = run / "cascade" / "model"
    if config.distill_steps and config.teacher == "cascade" and not (cascade / "manifest.json").exists():
        raise ValueError(f"the distill phase needs the cascade as teacher: {cascade} is missing; "
                         f"make it with: genrec cascade train --run {run} (or set distill_steps=0)")
    needs_ranker = config.grpo_steps > 0 and "ranker" in config.reward
    ranker = RankerReward.from_run(run) if needs_ranker or (cascade / "manifest.json").exists() else None
    oracle = OracleUtility.from_run(run) if (run / "data" / "truth.npz").exists() else None
    validate = validation(run, split, encoder, trie, config, dataset, ranker, oracle, beams=retriever.beams)

    context = AlignmentContext(config, model, encoder, trie, codebook, examples, weights.weight(examples.actions, examples.positions))
    results: dict[str, dict] = {}
    start_scores = None
    for phase in PHASES:
        steps = config.steps(phase)
        if steps == 0:
            continue
        done = work / phase / "done.json"
        if done.exists():
            results[phase] = json.loads(done.read_text())
            model.load_state_dict(torch.load(work / phase / "result.pt", weights_only=True)["model"])
            say(f"{phase}: done before, reusing it")
            continue
        if start_scores is None:
            start_scores = _scores(validate, model)
            say(f"start: {_fmt(start_scores)}")
        phase_start = start_scores
        loss, rows, batch_size, lr = _phase(phase, context, run, work, pars, ranker, (dataset, split), say)
        if not len(rows):
            say(f"{phase}: no examples, skipped")
            continue
        cpu, wall = time.process_time(), time.perf_counter()
        train_config = TrainConfig(steps=steps, batch_size=min(batch_size, len(rows)), lr=lr, warmup_steps=min(10, steps // 5),
                                   eval_every=min(config.eval_every, steps), checkpoint_every=min(config.eval_every, steps),
                                   seed=config.seed, device="cpu", progress=config.progress, min_lr_ratio=1.0)
        result = train(model, loss, rows.tolist(), _as_rows, train_config, work / phase, evaluate=validate,
                       metric="select", resume=(work / phase / LAST_CHECKPOINT).exists())  # continue an interrupted phase
        load_best(model, work / phase)
        kept = result.best_metric is not None and result.best_metric > start_scores["select"]
        if not kept:  # validation says this phase hurt: go back to the model it started from
            model.load_state_dict(context.starts[phase])
        else:
            start_scores = next(h for h in result.history if h["step"] == result.best_step)
        results[phase] = {"kept": kept, "start": phase_start, "best_step": result.best_step, "best_select": result.best_metric,
                          "history": result.history, "cpu_seconds": round(time.process_time() - cpu, 1),
                          "wall_seconds": round(time.perf_counter() - wall, 1), "examples": int(len(rows))}
        torch.save({"model": model.state_dict()}, work / phase / "result.pt")
        write_json_atomic(done, results[phase])
        say(f"{phase}: {'kept' if kept else 'dropped'} (best step {result.best_step}, select {result.best_metric:.4f})")

    head_mix, keywords = None, None
    if config.head_mixes and getattr(model, "item_head", None) is not None:
        valid = validation_requests(split, config)
        keywords = keyword_index(dataset) if any(config.keyword_matches) and any(r.is_search for r in valid[0]) else None
        head_mix = _choose_mixes(model, encoder, trie, valid, retriever.beams, config.head_mixes, config.text_matches,
                                 say, config.text_lookaheads, keywords, config.keyword_matches)
        start_scores = None  # the served order changed: measure it again
        if not model.config.keyword_match:
            keywords = None  # a model that does not weigh keywords carries no index
        validate = validation(run, split, encoder, trie, config, dataset, ranker, oracle, beams=retriever.beams,
                              keywords=keywords)
    final = _scores(validate, model) if start_scores is None else start_scores
    return write_aligned(run, model, base, config, results, final, head_mix, keywords)


def serving_settings(model_config, config: AlignConfig):
    """`model_config` with the serving settings `config` sets (`exclude_history`, `item_head_candidates`,
    `item_head_mix`; None keeps the trained model's)."""
    changes = {name: getattr(config, name) for name in ("exclude_history", "item_head_candidates", "item_head_mix")
               if getattr(config, name) is not None}
    if changes.get("item_head_mix") and not model_config.item_head:  # GenerativeConfig checks the candidates itself
        raise ValueError("item_head_mix needs a model with an item head; this model has none")
    return replace(model_config, **changes)


def keyword_index(dataset: Dataset) -> KeywordIndex:
    """The catalogue's BM25 keyword index (`genrec.model.keywords`) over the texts the BM25 baseline reads."""
    items = dataset.items
    return KeywordIndex.build(items["item_id"].to_numpy(dtype=np.int64), item_text(items),
                              int(items["item_id"].max()) + 1)


def _choose_mixes(model, encoder, trie, valid: tuple[list, np.ndarray], beams: int, candidates: tuple[float, ...],
                  text_matches: tuple[float, ...], say, text_lookaheads: tuple[float, ...] = (),
                  keywords: KeywordIndex | None = None, keyword_matches: tuple[float, ...] = ()) -> dict:
    """Set the model's item-head mixes and a search's text-match, keyword (given `keywords`) and
    text-lookahead weights to the best of the candidates on validation, chosen together
    (`genrec.align.head_mix.choose_search_scoring`; no lookahead candidates: 0)."""
    cpu = time.process_time()
    scoring = choose_search_scoring(model, encoder, trie, *valid, beams=beams, candidates=candidates,
                                    text_matches=text_matches or (0.0,), text_lookaheads=text_lookaheads or (0.0,),
                                    keywords=keywords, keyword_matches=keyword_matches or (0.0,))
    choice = scoring.choice
    before = (model.config.item_head_mix, model.config.item_head_search_mix, model.config.item_head_text_match,
              model.config.keyword_match, model.config.item_head_text_lookahead)
    model.config = replace(model.config,
                           item_head_mix=model.config.item_head_mix if choice.rec_mix is None else choice.rec_mix,
                           item_head_search_mix=choice.search_mix, item_head_text_match=choice.search_text_match,
                           keyword_match=choice.search_keyword_match, item_head_text_lookahead=scoring.text_lookahead)
    say(f"head mix: recommendation {before[0]} → {model.config.item_head_mix}, "
        f"search {before[1]} → {model.config.item_head_search_mix}; search text match {before[2]} → "
        f"{model.config.item_head_text_match}, keyword match {before[3]} → {model.config.keyword_match}, "
        f"text lookahead {before[4]} → {model.config.item_head_text_lookahead}")
    if scoring.lookahead_table:
        say("text lookahead: best search Recall@10 " + ", ".join(f"{r:.4f} at {w:g}" for w, r in scoring.lookahead_table))
    return {"item_head_mix": model.config.item_head_mix,
            "item_head_search_mix": model.config.item_head_search_mix,
            "item_head_text_match": model.config.item_head_text_match,
            "item_head_text_lookahead": model.config.item_head_text_lookahead,
            "keyword_match": model.config.keyword_match,
            "text_lookahead_table": [list(row) for row in scoring.lookahead_table],
            "table": [list(row) for row in choice.table], "cpu_seconds": round(time.process_time() - cpu, 1)}


def write_aligned(run: Path, model, base: Path, config: AlignConfig, results: dict, final: dict,
                  head_mix: dict | None = None, keywords: KeywordIndex | None = None) -> Path:
    """RUN/align/generative in the layout of RUN/train/generative (plus `keywords.npz` for a model
    that weighs a search's keywords); the manifest goes last."""
    out = run.joinpath(*ALIGNED_DIR)
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)
    base_config = json.loads((base / "config.json").read_text())
    base_config["model"] = {**base_config["model"], "item_head_mix": model.config.item_head_mix,
                            "item_head_search_mix": model.config.item_head_search_mix,
                            "item_head_text_match": model.config.item_head_text_match,
                            "item_head_text_lookahead": model.config.item_head_text_lookahead,
                            "keyword_match": model.config.keyword_match,
                            "exclude_history": model.config.exclude_history,
                            "item_head_candidates": model.config.item_head_candidates}
    with atomic_path(out / "best.pt") as tmp:
        torch.save({"model": model.state_dict()}, tmp)
    if keywords is not None:
        keywords.save(out / KEYWORDS_FILE)
    else:
        (out / KEYWORDS_FILE).unlink(missing_ok=True)
    write_json_atomic(out / "config.json", {**base_config, "align": config.to_dict()})
    shutil.copyfile(base / "encoder.json", out / ".encoder.json.tmp")
    (out / ".encoder.json.tmp").replace(out / "encoder.json")
    cascade = run / "cascade" / "model"
    write_json_atomic(out / "manifest.json", manifest(
        config.to_dict(), inputs={"base_model": folder_sha256(base),
                                  "cascade": folder_sha256(cascade) if cascade.is_dir() else None},
        code=code_fingerprint(*ALIGN_CODE),
        result={"phases": results, "head_mix": head_mix, "validation": final,
                "cpu_seconds": round(sum(r.get("cpu_seconds", 0.0) for r in [*results.values(), head_mix or {}]), 1)}))
    return out


# ---- phases --------------------------------------------------------------------------


def _phase(phase: str, c: AlignmentContext, run: Path, work: Path, pars: PARSReward, ranker,
           data: tuple[Dataset, Split], say):
    """(loss_fn, example rows, batch size, lr) of `phase`; the model's state at its start is kept."""
    config = c.config
    c.starts[phase] = {k: v.detach().clone() for k, v in c.model.state_dict().items()}
    n = len(c.examples)
    if phase in ("sft", "high_value"):
        rows = np.arange(n) if phase == "sft" else np.flatnonzero(np.isin(c.examples.actions, HIGH_VALUE_ACTIONS))
        weights = c.pars_weights if config.pars_weighted else np.ones(n, dtype=np.float32)
        return sft_loss(c, weights), rows, config.batch_size, config.lr
    if phase == "distill":
        lists = _teacher(run, work, c, data, say)
        rows = np.flatnonzero(c.examples.is_search) if config.teacher_for == "search" else np.arange(n)
        return distillation_loss(c, lists), rows, config.distill_batch_size, config.lr
    reward = build_reward(config.reward, run, pars=pars, pars_weight=config.pars_reward_weight, ranker=ranker)
    c.reference = _frozen_copy(c.model)
    return grpo_rollout_loss(c, reward), np.arange(n), config.grpo_batch_size, config.grpo_lr


def _teacher(run: Path, work: Path, c: AlignmentContext, data: tuple[Dataset, Split], say) -> TeacherLists:
    """The teacher's lists for the examples, computed once and cached in RUN/align/work."""
    config = c.config
    path = work / (f"teacher-{config.teacher}-{config.teacher_size}-{config.teacher_temperature}-{config.target_share}"
                   f"-{config.teacher_for}.npz")
    if path.exists():
        return TeacherLists.load(path)
    taught = c.examples.is_search if config.teacher_for == "search" else None
    say(f"teacher: {config.teacher} ranks {len(c.examples) if taught is None else int(taught.sum()):,} "
        "alignment requests")
    teacher = load_teacher(config.teacher, run, *data)  # loads; never trains (the dataset is align's own)
    lists = teacher_lists(teacher, c.examples, config.teacher_size, config.teacher_temperature, config.target_share,
                          taught=taught,
                          progress=lambda done, total: say(f"teacher {done}/{total}") if done % 1024 < 256 else None)
    lists.save(path)
    return lists


# ---- validation ----------------------------------------------------------------------


def validation(run: Path, split: Split, encoder, trie, config: AlignConfig, dataset: Dataset,
               ranker: RankerReward | None, oracle: OracleUtility | None, beams: int = 20,
               keywords: KeywordIndex | None = None) -> Callable:
    """`evaluate(model)` for the loop on a seeded sample of validation requests: Recall@10 and
    NDCG@10 (all, search, recommendation), the selection metric, and the guards: item coverage
    of the top 10, mean log-popularity of the recommended items, mean ranker reward and (on a
    generated world) the true expected Recall@10 under the oracle's choice model."""
    requests, targets = validation_requests(split, config)
    is_search = np.asarray([r.is_search for r in requests])
    counts = split.train[split.train["action"] != "impression"]["item_id"].value_counts()
    log_pop = np.zeros(int(max(dataset.items["item_id"].max(), counts.index.max() if len(counts) else 0)) + 1)
    log_pop[counts.index.to_numpy()] = np.log1p(counts.to_numpy())
    n_items = len(dataset.items)

    def evaluate(model) -> dict[str, float]:
        answers = GenerativeRetriever(model, encoder, trie, beams=beams, keywords=keywords).retrieve(requests, 10)
        ranked = ranked_matrix(answers, 10)
        scores = {"recall@10": recall_at_k(ranked, targets, 10).mean, "ndcg@10": ndcg_at_k(ranked, targets, 10).mean}
        for name, rows in (("search", is_search), ("rec", ~is_search)):
            if rows.any():
                scores[f"{name}_recall@10"] = recall_at_k(ranked[rows], targets[rows], 10).mean
                scores[f"{name}_ndcg@10"] = ndcg_at_k(ranked[rows], targets[rows], 10).mean
        real = ranked >= 0
        scores["coverage@10"] = len(np.unique(ranked[real])) / max(n_items, 1)
        scores["popularity@10"] = float(log_pop[ranked[real]].mean()) if real.any() else 0.0
        if ranker is not None:
            scores["ranker_reward@10"] = float(ranker.score(requests, ranked)[real].mean())
        if oracle is not None:
            scores["true_recall@10"] = float(oracle.score(requests, ranked).sum(1).mean())
        scores["select"] = _select(scores, config.select_metric)
        return scores

    return evaluate


def validation_requests(split: Split, config: AlignConfig) -> tuple[list, np.ndarray]:
    """The seeded sample of `valid_requests` validation requests (all when 0) and their targets."""
    requests, targets = build_requests(split, "valid")
    if config.valid_requests and len(requests) > config.valid_requests:
        pick = np.sort(np.random.default_rng(config.seed).choice(len(requests), config.valid_requests, replace=False))
        requests, targets = [requests[i] for i in pick], targets[pick]
    if not requests:
        raise ValueError("the validation split has no request; alignment chooses its checkpoints on validation")
    return requests, targets


def _select(scores: dict[str, float], metric: str) -> float:
    if metric == "balanced":
        parts = [scores[k] for k in ("search_recall@10", "rec_ndcg@10") if k in scores]
        return float(np.mean(parts))
    return float(scores.get(metric, scores["ndcg@10"]))


def _scores(validate: Callable, model) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        return {"step": 0, **{k: float(v) for k, v in validate(model).items()}}


# ---- small parts ---------------------------------------------------------------------


def _as_rows(rows: list[int]) -> np.ndarray:
    return np.asarray(rows, dtype=np.int64)




def _frozen_copy(model):
    import copy

    reference = copy.deepcopy(model).eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    return reference


def _sid_table(run: Path):
    from genrec.sid import SidTable

    if not (run / "sid" / "sids.parquet").exists():
        raise ValueError(f"align needs the SID table at {run / 'sid'} (missing); make it with: genrec sid --run {run}")
    return SidTable.load(run / "sid")


def _check_same_run(work: Path, config: AlignConfig, base_hash: str) -> None:
    """A resumed run must be the same run: RUN/align/work remembers the config and the base model
    it was started with. Work on another base model is stale and is discarded; another config is
    refused (the caller chooses to start over)."""
    path = work / "run.json"
    wanted = _settings(config.to_dict())
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("base_model") != base_hash:
            log.info("%s was started on another base model; starting over", work)
            shutil.rmtree(work)
            work.mkdir(parents=True)
        elif saved.get("config") != wanted:
            raise ValueError(f"{work} holds a run with another AlignConfig; pass resume=False (CLI: --fresh) to start over")
    write_json_atomic(path, {"config": wanted, "base_model": base_hash})


def align_if_stale(run: str | Path, config: AlignConfig | None = None) -> Path:
    """RUN/align/generative, re-made only when it is missing or was made from another base model,
    config or align code (what `genrec demo` calls). Trains the cascade first when a phase needs
    it and it is missing."""
    run = Path(run)
    config = config or AlignConfig()
    out = run.joinpath(*ALIGNED_DIR)
    base = run.joinpath(*BASE_DIR)
    if (out / "manifest.json").exists() and (base / "manifest.json").exists():
        saved = json.loads((out / "manifest.json").read_text())
        same = (saved.get("inputs", {}).get("base_model") == folder_sha256(base)
                and saved.get("code") == code_fingerprint(*ALIGN_CODE)
                and _settings(saved.get("config") or {}) == _settings(config.to_dict()))
        if same:
            log.info("reusing %s", out)
            return out
    dataset = Dataset.load(run / "data")
    split = leave_one_out(dataset.events)
    if config.needs_cascade:
        CascadeRetriever.train(run, dataset, split)  # when missing or stale
    # an interrupted run of this config continues; work left by another config is stale, not an error
    return align_generative(run, config, dataset=dataset, split=split,
                            resume=_work_is_for(run.joinpath(*WORK_DIR), config))


def _work_is_for(work: Path, config: AlignConfig) -> bool:
    """Whether RUN/align/work was started with `config` (so resuming it is the same run)."""
    path = work / "run.json"
    if not path.exists():
        return True
    return json.loads(path.read_text()).get("config") == _settings(config.to_dict())


def _settings(config: dict) -> dict:
    """An AlignConfig's fields that change the result (`progress` only changes what is printed),
    as JSON reads them back (a tuple and the list it was saved as compare equal)."""
    return json.loads(json.dumps({k: v for k, v in config.items() if k != "progress"}))


def _reporter(progress: bool) -> Callable[[str], None]:
    """Progress lines on the module's logger, each with the seconds since the stage began;
    without `progress` they go to DEBUG (shown only when asked for)."""
    began = time.perf_counter()
    level = logging.INFO if progress else logging.DEBUG
    return lambda message: log.log(level, "[align %6.1fs] %s", time.perf_counter() - began, message)


def _fmt(scores: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:.4f}" for k, v in scores.items() if k != "step")
