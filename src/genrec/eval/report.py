"""Turn an `EvalReport` into things people read: a Rich table, report.md, report.json, PNGs.

Search and recommendation are always shown apart: a retriever that is strong
on one and useless on the other (BM25 without a query, item-CF without a
history) must not hide behind an average. Every mean carries its 95%
interval, and the paired tests below each table say which gaps are real.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from genrec.artifacts import atomic_path, write_json_atomic, write_text_atomic
from genrec.eval.bootstrap import PairedComparison, bootstrap_means, percentile_interval
from genrec.eval.exposure import EXPOSURE_K
from genrec.eval.harness import HEADLINE, EvalReport, paired_comparison

log = logging.getLogger(__name__)

PLOTS_EXTRA = "pip install 'genrec[plots]'"


def plots_available() -> bool:
    """Whether matplotlib (the `plots` extra) is installed. Without it a report is written whole but
    for its pictures: the tables carry every number, and a server or a training box need no plotting."""
    try:
        import matplotlib  # noqa: F401  (imported to plot right after, so the check costs nothing)
    except ImportError:
        return False
    return True

REQUEST_TYPES: tuple[str, ...] = ("search", "recommendation")
SLICE_METRIC = "recall@10"
"""The metric of the per-slice table and bar chart (recall@1 when k < 10)."""


FOCUS = "generative"
"""The retriever the project is about: when present, reports also test it against every other one."""
FOCUS_METRICS = ("recall@10", "ndcg@10")


def print_report(report: EvalReport, console=None, focus: str = FOCUS) -> None:
    """Print one table per request type (with intervals and timings), then the slice table."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=max(Console().width, 180))
    for request_type in _present(report, REQUEST_TYPES):
        n = int(report.slices[request_type].sum())
        table = Table(title=f"{request_type} — {n} requests, mean [95% CI]")
        table.add_column("retriever", style="bold")
        for metric in _headline(report):
            table.add_column(metric, justify="right")
        table.add_column(f"coverage@{report.config.k}", justify="right")
        table.add_column("p50 / p99 ms", justify="right")
        table.add_column("req/s", justify="right")
        best = {m: max(report.value(r, m, request_type)[0] for r in report.retrievers) for m in _headline(report)}
        for name in report.retrievers:
            cells = []
            for metric in _headline(report):
                mean, low, high = report.value(name, metric, request_type)
                text = f"{mean:.3f} [{low:.3f}, {high:.3f}]"
                cells.append(f"[green]{text}[/green]" if mean == best[metric] and mean > 0 else text)
            result = report.results[name]
            p50, p99 = result.latency_percentiles(report.slices[request_type])
            cells += [f"{report.value(name, f'coverage@{report.config.k}', request_type)[0]:.3f}",
                      f"{p50:.1f} / {p99:.1f}", f"{result.throughput_rps:,.0f}"]
            table.add_row(name, *cells)
        console.print(table)
        for line in _comparison_lines(report, request_type):
            console.print("  " + line)
        for line in _focus_lines(report, request_type, focus):
            console.print("  " + line)
    console.print(_slice_table(report))


def write_report(report: EvalReport, out_dir: str | os.PathLike, command: str = "", focus: str = FOCUS) -> list[Path]:
    """Write report.md, report.json, recall_at_k.png and slices.png (with the `plots` extra) into
    `out_dir`; return the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    comparisons = [c for t in _present(report, REQUEST_TYPES) for c in _comparisons(report, t)]
    record = report.to_dict()
    record["comparisons"] = [vars(c) for c in comparisons]
    record["focus_comparisons"] = [vars(c) for t in _present(report, REQUEST_TYPES) for c in _focus_comparisons(report, t, focus)]
    record["command"] = command
    write_json_atomic(out / "report.json", record)
    write_text_atomic(out / "report.md", render_markdown(report, command, focus))
    paths = [out / "report.md", out / "report.json"]
    if not plots_available():
        log.warning("%s: no plots (recall_at_k.png, slices.png) without matplotlib: %s", out, PLOTS_EXTRA)
        return paths
    paths.append(_save_figure(plot_recall_curves(report), out / "recall_at_k.png"))
    paths.append(_save_figure(plot_slices(report), out / "slices.png"))
    return paths


def render_markdown(report: EvalReport, command: str = "", focus: str = FOCUS) -> str:
    """The report as Markdown: request-type tables with intervals, paired tests, slices, timings."""
    meta = report.meta
    lines = ["# Evaluation report", ""]
    if command:
        lines += ["```", command, "```", ""]
    facts = [f"{len(report.targets)} requests", f"{report.n_items} items", f"k = {report.config.k}",
             f"{report.config.bootstrap} bootstrap resamples", f"seed {report.config.seed}",
             "seen items " + ("removed" if report.config.exclude_seen else "kept")]
    facts = [f"{key}: {meta[key]}" for key in ("run", "split", "part", "created", "machine", "threads") if key in meta] + facts
    lines += ["- " + fact for fact in facts] + [""]
    lines += ["![Recall@K](recall_at_k.png)", "", f"![{_slice_metric(report)} by slice](slices.png)", ""]
    for request_type in _present(report, REQUEST_TYPES):
        n = int(report.slices[request_type].sum())
        lines += [f"## {request_type.capitalize()} ({n} requests)", "", "mean [95% bootstrap CI]; best in bold.", ""]
        headers = ["retriever", *_headline(report), f"coverage@{report.config.k}"]
        lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        best = {m: max(report.value(r, m, request_type)[0] for r in report.retrievers) for m in _headline(report)}
        for name in report.retrievers:
            cells = [name]
            for metric in _headline(report):
                mean, low, high = report.value(name, metric, request_type)
                text = f"{mean:.4f} [{low:.4f}, {high:.4f}]"
                cells.append(f"**{text}**" if mean == best[metric] and mean > 0 else text)
            cells.append(f"{report.value(name, f'coverage@{report.config.k}', request_type)[0]:.3f}")
            lines.append("| " + " | ".join(cells) + " |")
        lines += [""] + ["- " + line for line in _comparison_lines(report, request_type)] + [""]
        focus_lines = _focus_lines(report, request_type, focus)
        if focus_lines:
            lines += [f"{focus} against every other retriever (paired bootstrap):", ""]
            lines += ["- " + line for line in focus_lines] + [""]
    lines += [f"## {_slice_metric(report)} by slice", "", "mean [95% CI] (n requests)", ""]
    slice_names = [s for s in report.slices if report.slices[s].sum() > 0]
    lines += ["| slice | n | " + " | ".join(report.retrievers) + " |", "|---|---|" + "---|" * len(report.retrievers)]
    for name in slice_names:
        cells = []
        for retriever in report.retrievers:
            mean, low, high = report.value(retriever, _slice_metric(report), name)
            cells.append(f"{mean:.3f} [{low:.3f}, {high:.3f}]")
        lines.append(f"| {name} | {int(report.slices[name].sum())} | " + " | ".join(cells) + " |")
    lines += [""] + exposure_markdown(report)
    lines += ["## Speed", "", f"Latency: {report.config.latency_requests} seeded requests sent one at a time "
              f"(before the batched pass, so no warm caches); throughput: all requests in batches of {report.config.batch_size}.", "",
              "| retriever | p50 ms | p99 ms | search p50 / p99 ms | recommendation p50 / p99 ms | requests/s | total s |",
              "|---|---|---|---|---|---|---|"]
    for name, result in report.results.items():
        by_type = []
        for request_type in REQUEST_TYPES:
            p50, p99 = result.latency_percentiles(report.slices[request_type]) if request_type in report.slices else (np.nan, np.nan)
            by_type.append(f"{p50:.2f} / {p99:.2f}")
        lines.append(f"| {name} | {result.latency_ms_p50:.2f} | {result.latency_ms_p99:.2f} | {' | '.join(by_type)} | "
                     f"{result.throughput_rps:,.0f} | {result.seconds:.1f} |")
    lines += ["", "Slices are defined in `genrec/eval/slices.py`; metrics in `genrec/eval/metrics.py`.", ""]
    return "\n".join(lines)


def exposure_markdown(report: EvalReport) -> list[str]:
    """The "Exposure by origin and creator" section: one row per retriever, or a line saying why there is none."""
    lines = ["## Exposure by origin and creator", ""]
    if report.origins is None:
        return lines + ["Not measured: the items carry neither AI-generated content (`origin` = 'ai') nor a `creator_id` column.", ""]
    k = min(EXPOSURE_K, report.config.k)
    origins = report.origins
    catalogue = f"{origins.catalogue_ai_share:.3f}" if origins.is_ai is not None else "n/a (no AI-generated items)"
    creators = f"{origins.n_creators} creators" if origins.creator is not None else "no `creator_id` column"
    lines += [f"Slots in the top {k} of every answer. Catalogue AI share: {catalogue}; {creators}. "
              "AI share: mean over requests [95% bootstrap CI]; position-weighted by 1/log2(rank+1). "
              "Creator Gini over every catalogue creator (never shown = 0); top 1%: share of slots the most-shown 1% of creators hold.", ""]
    types = _present(report, REQUEST_TYPES)
    headers = ["retriever", f"AI share@{k}", *[f"AI share ({t})" for t in types], "AI share, position-weighted",
               "creators shown", "creator Gini", "top-1% creators' share"]
    lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for name in report.retrievers:
        found = report.exposure(name)
        assert found is not None
        cells = [name, _share_with_interval(found.per_request_ai_share, report)]
        for request_type in types:
            by_type = report.exposure(name, request_type)
            cells.append(_number(by_type.ai_share if by_type is not None else float("nan")))
        cells += [_number(found.ai_share_weighted),
                  f"{found.creators_exposed} / {found.creators}" if origins.creator is not None else "n/a",
                  _number(found.creator_gini), _number(found.top_creator_share)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _share_with_interval(per_request: np.ndarray, report: EvalReport) -> str:
    values = per_request[~np.isnan(per_request)]
    if not len(values):
        return "n/a"
    low, high = percentile_interval(bootstrap_means(values, report.config.bootstrap, report.config.seed), report.config.level)
    return f"{values.mean():.3f} [{float(low[0]):.3f}, {float(high[0]):.3f}]"


def _number(value: float) -> str:
    return "n/a" if value != value else f"{value:.3f}"


def plot_recall_curves(report: EvalReport):
    """Recall@K for K = 1..k, one line per retriever, one panel per request type."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = _present(report, REQUEST_TYPES) or ["all"]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    ks = np.arange(1, report.config.k + 1)
    for ax, panel in zip(axes[0], panels):
        for name in report.retrievers:
            ax.plot(ks, report.recall_curve(name, panel), label=name, linewidth=2)
        ax.set_xscale("log")
        ticks = [t for t in (1, 5, 10, 20, 50, 100, 200, 500) if t <= report.config.k]
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("K (log scale)")
        ax.set_ylabel("Recall@K")
        ax.set_title(f"{panel} ({int(report.slices[panel].sum())} requests)")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_ylim(0, None)
    axes[0][0].legend(loc="upper left")
    fig.tight_layout()
    return fig


def plot_slices(report: EvalReport):
    """`SLICE_METRIC` per slice (rows) and retriever (bars), with 95% interval whiskers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s for s in report.slices if report.slices[s].sum() > 0]
    retrievers = report.retrievers
    height = 0.8 / max(len(retrievers), 1)
    fig, ax = plt.subplots(figsize=(9, 0.5 + 0.32 * len(names) * max(len(retrievers), 2) / 2))
    y = np.arange(len(names))[::-1]
    for j, retriever in enumerate(retrievers):
        stats = np.array([report.value(retriever, _slice_metric(report), s) for s in names])
        error = np.stack([stats[:, 0] - stats[:, 1], stats[:, 2] - stats[:, 0]])
        ax.barh(y + (len(retrievers) / 2 - j - 0.5) * height, stats[:, 0], height, xerr=error, label=retriever, capsize=2)
    ax.set_yticks(y, [f"{s} ({int(report.slices[s].sum())})" for s in names])
    ax.set_xlabel(f"{_slice_metric(report)} (95% CI)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def _save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return path


def _slice_metric(report: EvalReport) -> str:
    return SLICE_METRIC if SLICE_METRIC in report.config.metric_names() else "recall@1"


def _present(report: EvalReport, names: Sequence[str]) -> list[str]:
    return [n for n in names if n in report.slices and report.slices[n].sum() > 0]


def _headline(report: EvalReport) -> list[str]:
    available = report.config.metric_names()
    return [m for m in HEADLINE if m in available]


def _comparisons(report: EvalReport, slice_name: str, metric: str | None = None) -> list[PairedComparison]:
    """Each retriever against the next best on `slice_name`: is every step of the ranking real?"""
    metric = metric or _slice_metric(report)
    ranked = sorted(report.retrievers, key=lambda r: -report.value(r, metric, slice_name)[0])
    return [paired_comparison(report, better, worse, metric, slice_name) for better, worse in zip(ranked, ranked[1:])]


def _focus_comparisons(report: EvalReport, slice_name: str, focus: str) -> list[PairedComparison]:
    """`focus` minus each other retriever on the headline metrics: does it beat each one, really?"""
    if focus not in report.retrievers:
        return []
    metrics = [m for m in FOCUS_METRICS if m in report.config.metric_names()]
    return [paired_comparison(report, focus, other, metric, slice_name)
            for other in report.retrievers if other != focus for metric in metrics]


def _comparison_lines(report: EvalReport, slice_name: str) -> list[str]:
    return [_line(c) for c in _comparisons(report, slice_name)]


def _focus_lines(report: EvalReport, slice_name: str, focus: str) -> list[str]:
    return [_line(c) for c in _focus_comparisons(report, slice_name, focus)]


def _line(c: PairedComparison) -> str:
    verdict = "real" if c.significant else "not significant"
    return f"{c.a} − {c.b} on {c.metric}: {c.difference:+.4f} [{c.ci_low:+.4f}, {c.ci_high:+.4f}], p = {c.p_value:.3g} ({verdict})"


def _slice_table(report: EvalReport):
    from rich.table import Table

    table = Table(title=f"{_slice_metric(report)} by slice — mean [95% CI]")
    table.add_column("slice")
    table.add_column("n", justify="right")
    for name in report.retrievers:
        table.add_column(name, justify="right")
    for slice_name, mask in report.slices.items():
        if mask.sum() == 0:
            continue
        cells = []
        for name in report.retrievers:
            mean, low, high = report.value(name, _slice_metric(report), slice_name)
            cells.append(f"{mean:.3f} [{low:.3f}, {high:.3f}]")
        table.add_row(slice_name, str(int(mask.sum())), *cells)
    return table
