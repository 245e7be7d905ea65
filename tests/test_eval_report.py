"""`genrec eval` builds retrievers by name, evaluates a run and writes a readable report."""

import json

import numpy as np

from genrec.cli import main
from genrec.eval.commands import run_evaluation
from genrec.eval.harness import EvalConfig


def test_run_evaluation_writes_tables_json_and_plots(small_world, tmp_path):
    run = tmp_path / "run"
    small_world.save(run / "data")
    names = ["popularity", "category_popularity", "bm25", "itemcf"]
    report = run_evaluation(run, names, config=EvalConfig(bootstrap=50, latency_requests=5), progress=False)

    assert report.retrievers == names
    assert report.slices["search"].sum() + report.slices["recommendation"].sum() == len(report.targets)
    markdown = (run / "eval" / "report.md").read_text()
    assert "## Search" in markdown and "## Recommendation" in markdown
    for name in names:
        assert f"| {name} |" in markdown
    # the generated world marks AI items and creators: every retriever gets an exposure row
    exposure = markdown.split("## Exposure by origin and creator")[1].split("\n## ")[0]
    assert all(f"| {name} |" in exposure for name in names) and "creator Gini" in exposure
    record = json.loads((run / "eval" / "report.json").read_text())
    assert 0 <= record["exposure"]["popularity"]["all"]["ai_share"] <= 1
    assert record["n_requests"] == len(report.targets)
    assert {row["retriever"] for row in record["summary"]} == set(names)
    for png in ("recall_at_k.png", "slices.png"):
        assert (run / "eval" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "eval" / "manifest.json").exists() and (run / "eval" / "config.json").exists()

    # the focus retriever is tested against every other one, on recall@10 and ndcg@10
    from genrec.eval.report import render_markdown

    focused = render_markdown(report, focus="bm25")
    assert "bm25 against every other retriever" in focused
    for other in ("popularity", "category_popularity", "itemcf"):
        assert f"bm25 − {other} on recall@10" in focused and f"bm25 − {other} on ndcg@10" in focused
    assert "against every other retriever" not in markdown  # no generative in this report

    # the popularity list is the same for everyone, so its coverage is k items at most
    assert report.value("popularity", "coverage@50")[0] <= 50 / report.n_items + 1e-12
    curve = report.recall_curve("bm25", "search")
    assert np.all(np.diff(curve) >= 0) and curve[-1] == report.value("bm25", "recall@50", "search")[0]


def test_genrec_eval_command_prints_and_exits_zero(small_world, tmp_path, capsys):
    run = tmp_path / "run"
    small_world.save(run / "data")
    code = main(["eval", "--run", str(run), "--retrievers", "popularity,bm25", "--bootstrap", "20",
                 "--max-requests", "60", "--no-write"])
    assert code == 0
    out = capsys.readouterr().out
    assert "search" in out and "recommendation" in out and "bm25" in out
    assert not (run / "eval").exists()
    assert main(["eval", "--run", str(run), "--retrievers", "no_such_retriever", "--no-write"]) == 2


def test_without_the_plots_extra_the_report_is_written_whole_but_for_its_pictures(small_world, tmp_path, monkeypatch,
                                                                                   caplog):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if `genrec[plots]` were not installed
    run = tmp_path / "run"
    small_world.save(run / "data")
    with caplog.at_level("WARNING", logger="genrec.eval.report"):
        run_evaluation(run, ["popularity"], config=EvalConfig(bootstrap=20, latency_requests=2), progress=False)
    assert "| popularity |" in (run / "eval" / "report.md").read_text()
    assert set(json.loads((run / "eval" / "report.json").read_text())["retrievers"]) == {"popularity"}
    assert not list((run / "eval").glob("*.png"))
    assert "pip install 'genrec[plots]'" in caplog.text
