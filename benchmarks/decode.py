"""Trie-constrained beam search: genrec vs Hugging Face `generate`, and latency vs catalog size.

Table 1 — the same-size encoder–decoder (d_model, heads, layers, ffn, SID
vocabulary), the same valid SIDs, the same beams: genrec's `GenerativeModel` +
`constrained_beam_search` (KV cache, trie tensors, one topk per level) against
a randomly initialised `BartForConditionalGeneration` under
`generate(num_beams=B, num_return_sequences=k, prefix_allowed_tokens_fn=...)`,
whose callback looks the allowed next tokens up in a dict of prefixes — the
usual way to constrain HF decoding. Both sides run from token ids to item ids,
encoder included; runs alternate genrec / HF so both see the same machine load.

Table 1b — genrec's inference modes beside the model's own decoding and HF,
same run, same requests: `FastDecoder` (genrec.model.inference) in fp32 and
bf16, each also with beam pruning (`prune_margin`), with how often each returns
the same top-k items as the model's own decoding — on this random model, and
(with --agreement-run) on a trained model answering its data set's real test
requests. The encoder's share of each fp32 call is timed on its own.

Table 2 — genrec latency, trie build time and trie memory for synthetic
catalogs of 10k, 100k and 1M items (3 levels of 256 codes + a disambiguation
level), same model, same beams.

    .venv/bin/python benchmarks/decode.py            # writes benchmarks/results/decode.md
    .venv/bin/python benchmarks/decode.py --quick    # a smoke run, a few repeats
    .venv/bin/python benchmarks/decode.py --agreement-run runs/demo   # + agreement on a trained model

Models are randomly initialised: this measures cost, not quality.
"""

from __future__ import annotations

import os

# Busy-waiting OpenMP threads collapse on a shared, oversubscribed machine (measured: 2 threads took
# 12x longer than 1); passive waiting keeps wall-clock times meaningful. Same setting for both sides.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from genrec.malloc import keep_freed_memory  # noqa: E402

MALLOC_TUNED = keep_freed_memory()

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from genrec.decode import PrefixTrie, TableStepModel, constrained_beam_search  # noqa: E402
from genrec.model import EncoderBatch, GenerativeConfig, GenerativeModel, InputSpec  # noqa: E402
from genrec.model.inference import FastDecoder  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "decode.md"
SPEC = InputSpec(codebook_sizes=(256, 256, 256, 16))
"""The benchmarked SID shape: three 256-way levels and a 16-way disambiguation level."""
HF_SPECIAL_TOKENS = 3  # BART: 0 = <s>, 1 = <pad>, 2 = </s> (also the decoder start); codes follow
PRUNE_MARGIN = 5.0
"""The margin `benchmarks/results/decode_pruning.md` chose on validation (≤ 1% quality loss)."""
MODES: dict[str, tuple[str, float | None]] = {
    "fp32": ("fp32", None), "bf16": ("bf16", None),
    f"fp32, prune {PRUNE_MARGIN:g}": ("fp32", PRUNE_MARGIN), f"bf16, prune {PRUNE_MARGIN:g}": ("bf16", PRUNE_MARGIN),
}
"""Inference modes: name → (`precision`, `prune_margin`) of `GenerativeRetriever`."""


def synthetic_sids(n_items: int, top_levels: int, codebook: int, disambiguation: int, seed: int) -> np.ndarray:
    """`[n, top_levels + 1]` distinct SIDs: uniform codes, then a disambiguation code = rank among equal prefixes."""
    rng = np.random.default_rng(seed)
    top = rng.integers(0, codebook, size=(n_items, top_levels))
    _, group, counts = np.unique(top, axis=0, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    order = np.argsort(group, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(n_items, dtype=np.int64)
    rank[order] = np.arange(n_items) - np.repeat(starts, counts)
    if rank.max() >= disambiguation:
        raise ValueError(f"a prefix holds {rank.max() + 1} items, more than disambiguation={disambiguation}")
    return np.concatenate([top, rank[:, None]], axis=1)


# ----- genrec side ------------------------------------------------------------------------------
class GenrecSearch:
    """The model's own decoding (`precision=None`) or a `FastDecoder` copy of the same model."""

    def __init__(self, model: GenerativeModel, trie: PrefixTrie, beams: int, k: int, precision: str | None = None,
                 prune_margin: float | None = None):
        self.model = model if precision is None else FastDecoder(model, precision)
        self.trie, self.beams, self.k, self.prune_margin = trie, beams, k, prune_margin

    @torch.inference_mode()
    def __call__(self, batch: EncoderBatch) -> torch.Tensor:
        state = self.model.encode(batch)
        items, _ = constrained_beam_search(self.model, state, self.trie, beams=self.beams, k=self.k,
                                           prune_margin=self.prune_margin)
        return items

    @torch.inference_mode()
    def encode(self, batch: EncoderBatch) -> None:
        self.model.encode(batch)


# ----- Hugging Face side ------------------------------------------------------------------------
class HuggingFaceSearch:
    """BART of the same size over one flat vocabulary: special tokens, then each level's codes."""

    def __init__(self, config: GenerativeConfig, codes: np.ndarray, item_ids: np.ndarray, beams: int, k: int):
        from transformers import BartConfig, BartForConditionalGeneration

        self.offsets = HF_SPECIAL_TOKENS + np.concatenate([[0], np.cumsum(SPEC.codebook_sizes)[:-1]])
        vocab = HF_SPECIAL_TOKENS + sum(SPEC.codebook_sizes)
        bart_config = BartConfig(
            vocab_size=vocab, d_model=config.d_model,
            encoder_layers=config.n_encoder_layers, decoder_layers=config.n_decoder_layers,
            encoder_attention_heads=config.n_heads, decoder_attention_heads=config.n_heads,
            encoder_ffn_dim=config.d_ff, decoder_ffn_dim=config.d_ff, max_position_embeddings=64,
            pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
            forced_bos_token_id=None, forced_eos_token_id=None, dropout=0.0, attention_dropout=0.0,
        )
        self.model = BartForConditionalGeneration(bart_config).eval()
        self.levels, self.beams, self.k = len(SPEC.codebook_sizes), beams, k
        tokens = codes + self.offsets  # [n, L] token ids
        self.allowed: dict[tuple[int, ...], list[int]] = {}
        for sid in tokens.tolist():
            for level in range(self.levels):
                self.allowed.setdefault(tuple(sid[:level]), []).append(sid[level])
        self.allowed = {prefix: sorted(set(nxt)) for prefix, nxt in self.allowed.items()}
        self.item_of = {tuple(sid): int(item) for sid, item in zip(tokens.tolist(), item_ids.tolist())}

    def allowed_tokens(self, batch_id: int, input_ids: torch.Tensor) -> list[int]:
        return self.allowed.get(tuple(input_ids.tolist()[1:]), [])

    @torch.inference_mode()
    def __call__(self, input_ids: torch.Tensor, constrained: bool = True) -> torch.Tensor:
        """`constrained=False` drops the trie (and so may emit invalid SIDs): it prices HF's callback."""
        out = self.model.generate(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
            num_beams=self.beams, num_return_sequences=self.k, do_sample=False,
            max_new_tokens=self.levels, min_new_tokens=self.levels, early_stopping=False,
            prefix_allowed_tokens_fn=self.allowed_tokens if constrained else None, forced_eos_token_id=None, forced_bos_token_id=None,
            no_repeat_ngram_size=0, length_penalty=1.0,
        )
        return out

    def items(self, generated: torch.Tensor) -> list[int]:
        return [self.item_of.get(tuple(row[1:].tolist()), -1) for row in generated]


def hf_inputs(batch: EncoderBatch, vocab: int) -> torch.Tensor:
    """A token sequence as long as genrec's encoder input, for BART's encoder: `[B, S]`."""
    parts = [batch.query, batch.user, batch.short_items, batch.long_items, batch.context]
    length = sum(p.shape[1] for p in parts)
    generator = torch.Generator().manual_seed(length)
    return torch.randint(HF_SPECIAL_TOKENS, vocab, (batch.batch_size, length), generator=generator)


# ----- timing -----------------------------------------------------------------------------------
def timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def summarize(times: list[tuple[float, float]], batch: int) -> dict[str, float]:
    """q/s from the median wall time; CPU ms is the process's CPU time per call (robust to other load)."""
    wall = [w for w, _ in times]
    p50 = statistics.median(wall)
    cpu = statistics.median(c for _, c in times)
    return {"qps": batch / p50, "p50_ms": 1e3 * p50, "p99_ms": 1e3 * float(np.percentile(wall, 99)),
            "cpu_ms": 1e3 * cpu, "runs": len(times)}


def same_items(got: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(share of requests whose top-k holds the same items as the reference, share in the same order too)."""
    same_set = float(np.mean([set(a) == set(b) for a, b in zip(got.tolist(), ref.tolist())]))
    return same_set, float((got == ref).all(dim=1).float().mean())


def compare_with_hf(config, codes, item_ids, beams, k, batches, repeats, hf_repeats, seed, agreement_requests) -> list[dict]:
    trie = PrefixTrie.from_codes(codes, item_ids, codebook_sizes=list(SPEC.codebook_sizes))
    torch.manual_seed(seed)
    model = GenerativeModel(config, SPEC).eval()
    genrec = GenrecSearch(model, trie, beams, k)
    modes = {name: GenrecSearch(model, trie, beams, k, *mode) for name, mode in MODES.items()}
    hf = HuggingFaceSearch(config, codes, item_ids, beams, k)
    vocab = hf.model.config.vocab_size
    catalog = set(item_ids.tolist())
    rows = []
    for batch_size in batches:
        generator = torch.Generator().manual_seed(seed + batch_size)
        batch = EncoderBatch.random(SPEC, batch_size, generator)
        tokens = hf_inputs(batch, vocab)
        # warm-up, and a check that both sides return k valid, distinct items per request
        got = genrec(batch)
        hf_items = hf.items(hf(tokens))
        assert all(len(set(r)) == k and set(r) <= catalog for r in got.tolist()), "genrec returned an invalid list"
        assert set(hf_items) <= catalog, "HF generated an SID outside the trie"
        for search in modes.values():
            assert all(len(set(r)) == k and set(r) <= catalog for r in search(batch).tolist())
        g_times, h_times, free_times, encode_times = [], [], [], []
        mode_times: dict[str, list[tuple[float, float]]] = {p: [] for p in modes}
        for r in range(repeats[batch_size]):
            g_times.append(timed(genrec, batch))
            for p, search in modes.items():
                mode_times[p].append(timed(search, batch))
            encode_times.append(timed(modes["fp32"].encode, batch))
            if r < hf_repeats[batch_size]:
                h_times.append(timed(hf, tokens))
            if r < max(2, hf_repeats[batch_size] // 2):
                free_times.append(timed(hf, tokens, False))
        g, h = summarize(g_times, batch_size), summarize(h_times, batch_size)
        # The search machinery alone: same trie and beams, a table lookup in place of the Transformer.
        toy = TableStepModel(SPEC.levels, max(SPEC.codebook_sizes), buckets=64, seed=seed)
        search_only = lambda toy=toy, n=batch_size: constrained_beam_search(toy, toy.initial_state(n), trie, beams, k)  # noqa: E731
        search_only()
        row = {"batch": batch_size, "genrec": g, "hf": h, "ratio": g["qps"] / h["qps"],
               "cpu_ratio": h["cpu_ms"] / g["cpu_ms"], "hf_free": summarize(free_times, batch_size),
               "search_only": summarize([timed(search_only) for _ in range(repeats[batch_size])], batch_size),
               "modes": {p: summarize(t, batch_size) for p, t in mode_times.items()},
               "fp32_encode": summarize(encode_times, batch_size)}
        rows.append(row)
        print(f"batch {batch_size:>3}: genrec {g['qps']:8.1f} q/s p50 {g['p50_ms']:7.1f} ms cpu {g['cpu_ms']:7.1f} ms | "
              f"HF {h['qps']:7.1f} q/s p50 {h['p50_ms']:7.1f} ms cpu {h['cpu_ms']:7.1f} ms | "
              f"ratio {row['ratio']:.1f}x (cpu {row['cpu_ratio']:.1f}x) | " +
              " | ".join(f"{p} p50 {m['p50_ms']:.1f} ms cpu {m['cpu_ms']:.1f} ms ({h['cpu_ms'] / m['cpu_ms']:.1f}x HF cpu)"
                         for p, m in row["modes"].items()), flush=True)
    # Agreement with the model's own decoding, on requests beyond the timed ones.
    generator = torch.Generator().manual_seed(seed + 1)
    agreement: dict[str, list[tuple[float, float]]] = {p: [] for p in modes}
    for _ in range(agreement_requests // 64):
        batch = EncoderBatch.random(SPEC, 64, generator)
        reference = genrec(batch)
        for p, search in modes.items():
            agreement[p].append(same_items(search(batch), reference))
    for row in rows:
        row["agreement"] = {p: tuple(float(np.mean(col)) for col in zip(*a)) for p, a in agreement.items()}
    return rows


def trained_agreement(run: Path, k: int, limit: int, timed_batches: int, rounds: int) -> dict:
    """Same top-k as the model's own decoding, for a trained model (`genrec train --run RUN --model
    generative`) answering the first `limit` test requests of its data set (leave-one-out split); and
    the CPU time of each mode on `timed_batches` batches of 64 of them (featurized outside the clock:
    encoder + beam search only), `rounds` rounds with the modes interleaved."""
    import warnings

    from genrec.data.dataset import Dataset
    from genrec.data.splits import build_requests, leave_one_out
    from genrec.model.retriever import GenerativeRetriever

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a model trained by other code is still a trained model
        retriever = GenerativeRetriever.from_run(run)
    requests, _ = build_requests(leave_one_out(Dataset.load(run / "data").events), "test")
    requests = requests[:limit]
    reference = retriever.retrieve(requests, k)
    out: dict = {"requests": len(requests), "beams": retriever.beams,
                 "search": sum(r.is_search for r in requests), "levels": list(retriever.model.spec.codebook_sizes),
                 "items": len(retriever.trie.leaf_item_ids)}
    for p, (precision, margin) in MODES.items():
        fast = GenerativeRetriever(retriever.model, retriever.encoder, retriever.trie, beams=retriever.beams,
                                   precision=precision, prune_margin=margin)
        got = fast.retrieve(requests, k)
        out[p] = (float(np.mean([set(a.item_ids) == set(b.item_ids) for a, b in zip(got, reference)])),
                  float(np.mean([np.array_equal(a.item_ids, b.item_ids) for a, b in zip(got, reference)])))
    batches = [retriever.encoder.transform(requests[i:i + 64]) for i in range(0, 64 * timed_batches, 64)]
    decoders = {"model": (retriever.model, None),
                **{name: (FastDecoder(retriever.model, precision), margin) for name, (precision, margin) in MODES.items()}}

    def decode_all(decoder, margin) -> None:
        with torch.inference_mode():
            for batch in batches:
                constrained_beam_search(decoder, decoder.encode(batch), retriever.trie, retriever.beams, k,
                                        prune_margin=margin)

    times: dict[str, list[float]] = {name: [] for name in decoders}
    for decoder, margin in decoders.values():
        decode_all(decoder, margin)  # warm-up
    for _ in range(rounds):
        for name, (decoder, margin) in decoders.items():
            times[name].append(timed(decode_all, decoder, margin)[1])
    out["timed_requests"] = sum(b.batch_size for b in batches)
    out["cpu_ms"] = {name: 1e3 * statistics.median(t) / out["timed_requests"] for name, t in times.items()}
    print(f"trained model {run}: " + ", ".join(f"{p} same top-{k} {out[p][0]:.3f}" for p in MODES) + "; CPU ms/request " +
          ", ".join(f"{name} {ms:.2f}" for name, ms in out["cpu_ms"].items()), flush=True)
    return out


def latency_vs_catalog(config, sizes, beams, k, batches, repeats, seed) -> list[dict]:
    """All catalogs are built first, then timed in rotation, so load drift on the machine hits every size alike."""
    torch.manual_seed(seed)
    model = GenerativeModel(config, SPEC).eval()
    rows, tries = [], []
    for n in sizes:
        codes = synthetic_sids(n, SPEC.levels - 1, SPEC.codebook_sizes[0], SPEC.codebook_sizes[-1], seed)
        start = time.perf_counter()
        trie = PrefixTrie.from_codes(codes, np.arange(1, n + 1), codebook_sizes=list(SPEC.codebook_sizes))
        rows.append({"items": n, "build_s": time.perf_counter() - start, "memory_mb": trie.memory_bytes() / 2**20,
                     "storage": "/".join(trie.level_storage())})
        tries.append(trie)
    for batch_size in batches:
        batch = EncoderBatch.random(SPEC, batch_size, torch.Generator().manual_seed(seed + batch_size))
        searches = [lambda trie=trie, batch=batch: constrained_beam_search(model, model.encode(batch), trie, beams, k)
                    for trie in tries]
        times: list[list[tuple[float, float]]] = [[] for _ in tries]
        for search in searches:
            search()
        for _ in range(repeats[batch_size]):
            for i, search in enumerate(searches):
                times[i].append(timed(search))
        for row, t in zip(rows, times):
            row[batch_size] = summarize(t, batch_size)
    for row in rows:
        print(f"{row['items']:>8} items: build {row['build_s']:.2f} s, {row['memory_mb']:.1f} MiB, " +
              ", ".join(f"batch {b} p50 {row[b]['p50_ms']:.1f} ms cpu {row[b]['cpu_ms']:.1f} ms" for b in batches),
              flush=True)
    return rows


def write_report(args, config, hf_rows, size_rows, hf_catalog, batches, elapsed, trained) -> str:
    import transformers

    cmd = "`.venv/bin/python " + " ".join(sys.argv) + "`"  # as it was run
    lines = [
        "# Trie-constrained beam search: genrec vs Hugging Face generate",
        "",
        f"Command: {cmd}  ",
        f"Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}  ",
        f"Machine: {platform.machine()} {_cpu_name()}, torch.set_num_threads({args.threads}) "
        f"(shared machine: medians over repeats; genrec/HF runs interleaved, catalog sizes interleaved)  ",
        f"Versions: torch {torch.__version__}, transformers {transformers.__version__}, Python {platform.python_version()}  ",
        f"Seed: {args.seed}; total benchmark time {elapsed:.0f} s; load average (1 min) at start / end "
        f"{args.load_start:.1f} / {os.getloadavg()[0]:.1f}; OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; "
        f"malloc keeps freed memory (`keep_freed_memory`, every side): {'yes' if MALLOC_TUNED else 'no'}",
        "",
        f"Model (both sides, random init): d_model {config.d_model}, {config.n_heads} heads, "
        f"{config.n_encoder_layers}+{config.n_decoder_layers} layers, ffn {config.d_ff}, SID levels "
        f"{list(SPEC.codebook_sizes)} (HF: one flat vocabulary of {HF_SPECIAL_TOKENS + sum(SPEC.codebook_sizes)} "
        f"tokens); encoder input 24 tokens; beams {args.beams}, k {args.k}, "
        f"{hf_catalog:,} synthetic items.",
        "",
        "## Same model size, same trie, same beams",
        "",
        "| batch | genrec q/s | genrec p50 ms | genrec p99 ms | genrec CPU ms | HF q/s | HF p50 ms | HF p99 ms "
        "| HF CPU ms | genrec / HF throughput (wall) | HF / genrec CPU time | runs genrec / HF "
        "| HF unconstrained p50 ms / CPU ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in hf_rows:
        g, h = r["genrec"], r["hf"]
        lines.append(f"| {r['batch']} | {g['qps']:.1f} | {g['p50_ms']:.1f} | {g['p99_ms']:.1f} | {g['cpu_ms']:.1f} | "
                     f"{h['qps']:.1f} | {h['p50_ms']:.1f} | {h['p99_ms']:.1f} | {h['cpu_ms']:.1f} | "
                     f"**{r['ratio']:.1f}×** | {r['cpu_ratio']:.1f}× | {g['runs']} / {h['runs']} | "
                     f"{r['hf_free']['p50_ms']:.1f} / {r['hf_free']['cpu_ms']:.1f} |")
    lines += [
        "",
        "## Inference modes: `GenerativeRetriever(..., precision=..., prune_margin=...)`",
        "",
        "Same run, same requests, timed in turn with the rows above. `model` is the model's own decoding "
        "(`precision=None`, what training evaluates, bit for bit); `fp32` and `bf16` are a `FastDecoder` copy of it "
        "(`genrec.model.inference`), which also never steps a prefix with one item below it (its remaining "
        f"codes are forced: exact); `prune {PRUNE_MARGIN:g}` adds beam pruning at margin {PRUNE_MARGIN:g} nats "
        "(`genrec.decode.pruning`, approximate; the margin `decode_pruning.md` chose on validation). "
        "Same top-k: share of requests whose k items equal the model's own (as a set; in the same order in brackets).",
        "",
        f"| batch | mode | q/s | p50 ms | p99 ms | CPU ms | mode / HF throughput (wall) | HF / mode CPU time "
        f"| same top-{args.k}, this random model ({args.agreement_requests} requests) "
        + (f"| same top-{args.k}, trained model ({trained['requests']} real requests) " if trained else "") + "|",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if trained else ""),
    ]
    for r in hf_rows:
        h = r["hf"]
        modes = {"model": r["genrec"], **r["modes"]}
        for name, m in modes.items():
            share = lambda same: f"{100 * same[0]:.1f}% ({100 * same[1]:.1f}%)"  # noqa: E731
            cells = ["reference"] * (2 if trained else 1) if name == "model" else (
                [share(r["agreement"][name])] + ([share(trained[name])] if trained else []))
            lines.append(f"| {r['batch']} | {name} | {m['qps']:.1f} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} | "
                         f"{m['cpu_ms']:.1f} | **{m['qps'] / h['qps']:.1f}×** | {h['cpu_ms'] / m['cpu_ms']:.1f}× | "
                         + " | ".join(cells) + " |")
    if trained:
        lines += ["", f"Trained model: `{args.agreement_run}` (SID levels {trained['levels']}, {trained['items']:,} items, "
                      f"beams {trained['beams']}), its first {trained['requests']} leave-one-out test requests "
                      f"({trained['search']} searches, the rest recommendations).", "",
                  f"The same trained model's CPU time per request, batch 64, its first {trained['timed_requests']} "
                  "test requests (featurized outside the clock; encoder + beam search), modes interleaved, "
                  "medians. Its catalog and its confident rankings are what pruning and the forced-prefix skip feed on; "
                  "the random model above is flat, so pruning drops nothing there:", "",
                  "| mode | CPU ms / request | speed-up over the model's own decoding | same top-10 |",
                  "|---|---:|---:|---:|"]
        base = trained["cpu_ms"]["model"]
        for name, ms in trained["cpu_ms"].items():
            same = "reference" if name == "model" else f"{100 * trained[name][0]:.1f}% ({100 * trained[name][1]:.1f}%)"
            lines.append(f"| {name} | {ms:.2f} | {base / ms:.2f}× | {same} |")
    targets = {1: 4.0, 64: 10.0}
    verdicts = []
    for r in hf_rows:
        target = targets.get(r["batch"])
        if target is None:
            continue
        for name, m in r["modes"].items():
            agree = (trained or {}).get(name, r["agreement"][name])[0]
            ratio, cpu_ratio = m["qps"] / r["hf"]["qps"], r["hf"]["cpu_ms"] / m["cpu_ms"]
            ok = lambda x, target=target: "met" if x >= target else "not met"  # noqa: E731
            exact = "≥ 99% same top-k" if agree >= 0.99 else f"only {100 * agree:.1f}% same top-k"
            verdicts.append(f"batch {r['batch']}, {name} (target ≥ {target:.0f}×): {ok(ratio)} by wall clock "
                            f"({ratio:.1f}×), {ok(cpu_ratio)} by CPU time ({cpu_ratio:.1f}×); {exact}")
    lines += ["", "**Targets**: " + "; ".join(verdicts) + "."]
    lines += [
        "",
        "Where the time goes (CPU ms per call, medians):",
        "",
        "| batch | genrec search without the model (TableStepModel) | genrec model + search | fp32 mode | "
        "fp32 mode: encoder | fp32 mode: decoder + search | "
        "HF constraint callback (constrained − unconstrained) | HF model + beam search (unconstrained) "
        "| constraint cost HF / genrec |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in hf_rows:
        search_cpu = r["search_only"]["cpu_ms"]
        callback_cpu = max(r["hf"]["cpu_ms"] - r["hf_free"]["cpu_ms"], 0.0)
        fp32, encode = r["modes"]["fp32"]["cpu_ms"], r["fp32_encode"]["cpu_ms"]
        lines.append(f"| {r['batch']} | {search_cpu:.1f} | {r['genrec']['cpu_ms']:.1f} | {fp32:.1f} | {encode:.1f} | "
                     f"{fp32 - encode:.1f} | {callback_cpu:.1f} | {r['hf_free']['cpu_ms']:.1f} | "
                     f"{callback_cpu / search_cpu:.0f}× |")
    big = hf_rows[-1]
    fast = big["modes"]["fp32"]
    met = lambda ratio: "met" if ratio >= 10 else "not met"  # noqa: E731
    fast_ratio, fast_cpu_ratio = fast["qps"] / big["hf"]["qps"], big["hf"]["cpu_ms"] / fast["cpu_ms"]
    lines += [
        "",
        f"**Target ≥10× HF throughput at batch {big['batch']}, exact (fp32 mode): {met(fast_ratio)} by wall clock "
        f"({fast_ratio:.1f}×), {met(fast_cpu_ratio)} by CPU time ({fast_cpu_ratio:.1f}×); the model's own decoding: "
        f"{big['ratio']:.1f}× / {big['cpu_ratio']:.1f}×.** "
        f"genrec's search machinery (trie gathers, masked log-softmax, one topk per level) costs "
        f"{big['search_only']['cpu_ms']:.1f} ms of CPU where HF's prefix callback costs "
        f"{max(big['hf']['cpu_ms'] - big['hf_free']['cpu_ms'], 0):.1f} ms. Of the fp32 mode's {fast['cpu_ms']:.1f} ms, "
        f"the encoder takes {big['fp32_encode']['cpu_ms']:.1f} ms ({big['batch']} requests × 24 tokens, which HF's "
        f"encoder pays too); the rest is the decoder's {SPEC.levels - 1} levels × batch × beams rows (fewer where a prefix "
        "has one item below it) and the search. Both are fp32 matrix products at close to this CPU's fp32 rate: "
        "what is left to gain without changing the arithmetic is small, and bf16 (AMX) multiplies 4–6× faster "
        "but reorders near-tied items. genrec's model path is cheaper than HF's unconstrained one because level 0 "
        "runs once per request instead of once per beam, cross-attention K/V are computed once per request "
        "instead of once per beam, each level's head has that level's codebook size instead of the flat "
        "vocabulary, and forced prefixes are not stepped.",
    ]
    noisy = [r for r in hf_rows if max(r["ratio"], r["cpu_ratio"]) > 2 * min(r["ratio"], r["cpu_ratio"])]
    if noisy:
        lines.append("")
        lines.append(f"At batch {', '.join(str(r['batch']) for r in noisy)} the wall-clock and CPU-time ratios "
                     "disagree by more than 2×: on the loaded shared machine, wall time there measures scheduling "
                     "(a 2-thread parallel region waits until both threads are scheduled), so read the CPU-time ratio.")
    lines += [
        "",
        "q/s = batch / p50 wall-clock latency; CPU ms = median CPU time of the process per call, which other "
        "engineers' load on the shared machine does not inflate. p99 over few runs is close to the maximum. "
        "HF's constraint is "
        "`prefix_allowed_tokens_fn` (a Python call per beam per step, dict lookup of the prefix); genrec's is "
        "one gather from the trie tensors per level for all beams of all requests. In the modes table, `fp32` "
        "keeps the model's arithmetic (fp32 matrix products run near this CPU's fp32 peak already, so it gains on "
        "the work it skips — forced prefixes — and on the small kernels around the products: fused q/k/v, "
        "cross-attention as two batched products, no per-beam copies of the summary or the self-attention cache), "
        "while `bf16` multiplies 4–6× faster on AVX-512 BF16 / AMX but rounds weights and inputs to 8 bits of "
        "mantissa, which reorders near-tied items.",
        "",
        "## genrec latency against catalog size",
        "",
        "| items | trie storage per level | trie build s | trie memory MiB | " +
        " | ".join(f"batch {b} p50 ms | batch {b} p99 ms | batch {b} CPU ms" for b in batches) + " |",
        "|---:|---|---:|---:|" + "---:|---:|---:|" * len(batches),
    ]
    for r in size_rows:
        lines.append(f"| {r['items']:,} | {r['storage']} | {r['build_s']:.2f} | {r['memory_mb']:.1f} | " +
                     " | ".join(f"{r[b]['p50_ms']:.1f} | {r[b]['p99_ms']:.1f} | {r[b]['cpu_ms']:.1f}"
                                for b in batches) + " |")
    first, last = size_rows[0], size_rows[-1]
    ratios = ", ".join(f"batch {b}: {last[b]['p50_ms'] / first[b]['p50_ms']:.2f}× "
                       f"(CPU time {last[b]['cpu_ms'] / first[b]['cpu_ms']:.2f}×)" for b in batches)
    per_million = last["memory_mb"] / (last["items"] / 1e6)
    lines += ["", f"p50 at {last['items']:,} items / p50 at {first['items']:,} items — {ratios} (target ≤ 1.5×).",
              f"Trie memory at {last['items']:,} items: {per_million:.1f} MiB per million items (target ≤ 100); "
              f"build {last['build_s']:.1f} s.", ""]
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({len(__import__('os').sched_getaffinity(0))} cores)"
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few repeats only (smoke run)")
    parser.add_argument("--beams", type=int, default=20)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hf-catalog", type=int, default=100_000)
    parser.add_argument("--catalog-sizes", default="10000,100000,1000000,10000000",
                        help="comma-separated catalog sizes of the latency-vs-size table")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--agreement-run", type=Path, default=Path("runs/demo"),
                        help="a run with a trained generative model: agreement on its real test requests (skipped if absent)")
    parser.add_argument("--agreement-requests", type=int, default=512, help="random requests for the agreement column")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.load_start = os.getloadavg()[0]
    started = time.perf_counter()

    # No item head: it re-ranks finished beams with a catalogue softmax, work Hugging Face does not do.
    config = GenerativeConfig(dropout=0.0, copy_recent=0, item_head=False)
    batches = (1, 64)
    if args.quick:
        repeats, hf_repeats, size_repeats = {1: 5, 64: 3}, {1: 3, 64: 2}, {1: 5, 64: 3}
    else:
        repeats, hf_repeats, size_repeats = {1: 60, 64: 25}, {1: 30, 64: 10}, {1: 50, 64: 15}
    codes = synthetic_sids(args.hf_catalog, 3, 256, 16, args.seed)
    item_ids = np.arange(1, args.hf_catalog + 1)
    print("genrec vs Hugging Face", flush=True)
    if args.quick:
        args.agreement_requests = min(args.agreement_requests, 128)
    hf_rows = compare_with_hf(config, codes, item_ids, args.beams, args.k, batches, repeats, hf_repeats, args.seed,
                              args.agreement_requests)
    trained = None
    if (args.agreement_run / "train" / "generative" / "manifest.json").exists():
        trained = trained_agreement(args.agreement_run, args.k, 200 if args.quick else 2000,
                                    timed_batches=3 if args.quick else 8, rounds=2 if args.quick else 7)
    print("latency vs catalog size", flush=True)
    size_rows = latency_vs_catalog(config, tuple(int(n) for n in args.catalog_sizes.split(",")), args.beams, args.k, batches,
                                   size_repeats, args.seed)
    report = write_report(args, config, hf_rows, size_rows, args.hf_catalog, batches, time.perf_counter() - started,
                          trained)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".md.tmp")
    tmp.write_text(report)
    tmp.replace(args.out)
    print(report)


if __name__ == "__main__":
    main()
