"""Decoding variants that were measured against `FastDecoder` and lost: the evidence behind its design.

Each variant is timed interleaved with the fp32 `FastDecoder` (same process, same
requests, CPU time medians) and checked for the same top-10 items:

- `torch.compile` (inductor, CPU) of `FastDecoder.step`: compile time, recompiles
  across levels and row counts, CPU time once compiled;
- int8 dynamic quantization (`torch.ao.quantization.quantize_dynamic`) of the
  decoder's linear layers (VNNI / AMX int8);
- bf16 in part of the model only (encoder only, decoder only) and fp32 tensors with
  oneDNN's bf16 arithmetic (`torch.backends.mkldnn.matmul.fp32_precision = "bf16"`:
  bf16 inputs, fp32 accumulation and output), on the trained model, where the
  agreement that matters is measured.

    PYTHONPATH=src .venv/bin/python benchmarks/decode_variants.py --run runs/demo

Writes benchmarks/results/decode_variants.md.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch._dynamo import config as dynamo_config  # noqa: E402
from torch._dynamo.utils import counters as dynamo_counters  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from decode import SPEC, synthetic_sids  # noqa: E402

from genrec.decode import PrefixTrie, constrained_beam_search  # noqa: E402
from genrec.malloc import keep_freed_memory  # noqa: E402
from genrec.model import EncoderBatch, GenerativeConfig, GenerativeModel  # noqa: E402
from genrec.model.inference import FastDecoder  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "decode_variants.md"


def cpu_ms(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return 1e3 * statistics.median(times)


def same_share(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float(np.mean([set(a) == set(b) for a, b in zip(got.tolist(), ref.tolist())]))


def int8_decoder(model: GenerativeModel) -> FastDecoder:
    """A fp32 `FastDecoder` whose decoder linears are dynamically quantized to int8 (called as modules)."""
    from torch.ao.quantization import quantize_dynamic

    fast = FastDecoder(model, "fp32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
        fast.layers = quantize_dynamic(fast.layers, {nn.Linear}, dtype=torch.qint8)
        fast.heads = quantize_dynamic(fast.heads, {nn.Linear}, dtype=torch.qint8)
    fast._linear = lambda layer, x: layer(x)  # type: ignore[method-assign]
    fast._mlp = types.MethodType(lambda self, layer, x: layer.down(F.gelu(layer.up(x))), fast)  # type: ignore[method-assign]
    return fast


def random_model_rows(batches: tuple[int, ...], rounds: dict[int, int], seed: int) -> list[dict]:
    config = GenerativeConfig(dropout=0.0, copy_recent=0, item_head=False)  # decoding only, as decode.py
    codes = synthetic_sids(100_000, 3, 256, 16, seed)
    trie = PrefixTrie.from_codes(codes, np.arange(1, 100_001), codebook_sizes=list(SPEC.codebook_sizes))
    torch.manual_seed(seed)
    model = GenerativeModel(config, SPEC).eval()
    eager = FastDecoder(model, "fp32")
    compiled = FastDecoder(model, "fp32")
    dynamo_config.cache_size_limit = 64
    compiled.step = torch.compile(compiled.step)  # type: ignore[method-assign]
    decoders = {"fp32 FastDecoder (eager)": eager, "torch.compile(step)": compiled, "int8 dynamic": int8_decoder(model)}
    rows = []
    for batch_size in batches:
        batch = EncoderBatch.random(SPEC, batch_size, torch.Generator().manual_seed(seed + batch_size))
        with torch.inference_mode():
            ref = constrained_beam_search(eager, eager.encode(batch), trie, 20, 10)[0]
            first, same = {}, {}
            for name, decoder in decoders.items():
                start = time.perf_counter()
                got = constrained_beam_search(decoder, decoder.encode(batch), trie, 20, 10)[0]
                first[name], same[name] = time.perf_counter() - start, same_share(got, ref)
            times: dict[str, list[float]] = {name: [] for name in decoders}
            for _ in range(rounds[batch_size]):
                for name, decoder in decoders.items():
                    times[name].append(cpu_ms(lambda d=decoder, b=batch: constrained_beam_search(d, d.encode(b), trie, 20, 10), 1))
        for name in decoders:
            rows.append({"batch": batch_size, "variant": name, "cpu_ms": statistics.median(times[name]),
                         "first_s": first[name], "same": same[name]})
            print(rows[-1], flush=True)
    compiles = dynamo_counters["stats"]["unique_graphs"]
    return rows + [{"graphs": compiles}]


def trained_rows(run: Path, limit: int, rounds: int) -> tuple[list[dict], dict]:
    from genrec.data.dataset import Dataset
    from genrec.data.splits import build_requests, leave_one_out
    from genrec.model.retriever import GenerativeRetriever

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        retriever = GenerativeRetriever.from_run(run)
    requests, _ = build_requests(leave_one_out(Dataset.load(run / "data").events), "test")
    requests = requests[:limit]
    batches = [retriever.encoder.transform(requests[i:i + 64]) for i in range(0, len(requests), 64)]
    model, trie, beams = retriever.model, retriever.trie, retriever.beams
    fp32, bf16 = FastDecoder(model, "fp32"), FastDecoder(model, "bf16")
    encoder_only = FastDecoder(model, "fp32")
    encoder_only._encode_memory = bf16._encode_memory  # type: ignore[method-assign]
    decoder_only = FastDecoder(model, "bf16")
    decoder_only._encode_memory = fp32._encode_memory  # type: ignore[method-assign]

    def onednn_bf16() -> None:
        torch.backends.mkldnn.matmul.fp32_precision = "bf16"  # type: ignore[attr-defined]

    def ieee() -> None:
        torch.backends.mkldnn.matmul.fp32_precision = "ieee"  # type: ignore[attr-defined]

    variants = {"fp32 FastDecoder": (fp32, ieee), "bf16 everywhere (FastDecoder bf16)": (bf16, ieee),
                "bf16 encoder, fp32 decoder": (encoder_only, ieee), "fp32 encoder, bf16 decoder": (decoder_only, ieee),
                "fp32 tensors, oneDNN bf16 arithmetic": (fp32, onednn_bf16), "int8 dynamic decoder": (int8_decoder(model), ieee)}

    def decode(decoder) -> torch.Tensor:
        with torch.inference_mode():
            return torch.cat([constrained_beam_search(decoder, decoder.encode(b), trie, beams, 10)[0] for b in batches])

    ref = decode(fp32)
    rows = []
    for name, (decoder, mode) in variants.items():
        mode()
        got = decode(decoder)
        ms = cpu_ms(lambda d=decoder: decode(d), rounds) / len(requests)
        ieee()
        rows.append({"variant": name, "same": same_share(got, ref), "cpu_ms": ms})
        print(rows[-1], flush=True)
    return rows, {"requests": len(requests), "levels": list(model.spec.codebook_sizes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"))
    parser.add_argument("--requests", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    random_rows = random_model_rows((1, 64), {1: 30, 64: 8}, seed=0)
    graphs = random_rows.pop()["graphs"]
    trained, meta = trained_rows(args.run, args.requests, rounds=3)
    lines = [
        "# Decoding variants measured against FastDecoder (and not kept)",
        "",
        f"Command: `.venv/bin/python {' '.join(sys.argv)}`  ",
        f"Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}; torch {torch.__version__}, 1 thread, "
        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; load average {load:.1f} before, {os.getloadavg()[0]:.1f} after; "
        f"{time.perf_counter() - started:.0f} s in all.",
        "",
        "## The benchmark's random model (d_model 128, 2+2 layers, SID levels [256, 256, 256, 16], 100,000 items, "
        "beams 20, k 10)",
        "",
        "CPU ms per call (encoder + beam search), variants interleaved, medians; same top-10: share of requests whose "
        "10 items equal the eager fp32 `FastDecoder`'s (the random model is flat, so any rounding reorders it).",
        "",
        "| batch | variant | CPU ms | vs eager fp32 | first call s | same top-10 |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for row in random_rows:
        base = next(r["cpu_ms"] for r in random_rows if r["batch"] == row["batch"] and "eager" in r["variant"])
        lines.append(f"| {row['batch']} | {row['variant']} | {row['cpu_ms']:.2f} | {base / row['cpu_ms']:.2f}× | "
                     f"{row['first_s']:.1f} | {100 * row['same']:.1f}% |")
    lines += [
        "",
        f"`torch.compile` built {graphs} graphs for batches 1 and 64 (one per level, row count and ragged/uniform "
        "layout, plus the pieces between graph breaks); the first call pays the compilation (the inductor cache "
        "on disk shortens later processes' first calls).",
        "",
        f"## The trained model (`{args.run}`, SID levels {meta['levels']}), its first {meta['requests']} test requests",
        "",
        "Batches of 64 featurized outside the clock; CPU ms per request; same top-10 as the fp32 `FastDecoder` "
        "(which returns the model's own items).",
        "",
        "| variant | CPU ms / request | vs fp32 | same top-10 |",
        "|---|---:|---:|---:|",
    ]
    base = trained[0]["cpu_ms"]
    for row in trained:
        lines.append(f"| {row['variant']} | {row['cpu_ms']:.3f} | {base / row['cpu_ms']:.2f}× | {100 * row['same']:.1f}% |")
    lines += [
        "",
        "Why none is kept: `torch.compile` is no faster here (the time is in fp32 matrix products that inductor "
        "hands to the same BLAS; what it fuses around them is small, and its guards and graph breaks cost more than "
        "they save at batch 1), and it recompiles for each new shape; int8 dynamic quantization re-quantizes every "
        "activation, so it gains little (the table) and changes far more rankings than bf16; every bf16 placement "
        "keeps fewer than 99% of top-10 lists — the error comes from rounding inputs to 8 bits of mantissa, "
        "wherever it happens, so no split of the model into bf16 and fp32 parts reaches the exact mode's answers.",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
