"""`genrec eval --trec-run`: the harness's rankings as TREC files that another evaluator scores the same."""

import pytest
from ranx import Qrels, Run, evaluate

from genrec.cli import main
from genrec.eval.commands import run_evaluation
from genrec.eval.harness import EvalConfig
from genrec.eval.trec import write_trec_run


@pytest.fixture(scope="module")
def run_folder(small_world, tmp_path_factory):
    run = tmp_path_factory.mktemp("trec") / "run"
    small_world.save(run / "data")
    return run


def _read(path, tag):
    """One retriever's lines of a multi-run TREC file as a ranx Run."""
    scores: dict[str, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        qid, q0, doc, rank, score, name = line.split()
        assert q0 == "Q0"
        if name == tag:
            scores.setdefault(qid, {})[doc] = float(score)
    return Run(scores, name=tag)


def test_ranx_reads_the_trec_files_back_to_the_harness_ndcg(run_folder, tmp_path):
    config = EvalConfig(k=20, bootstrap=10)
    report = run_evaluation(run_folder, ["popularity", "bm25"], config=config, max_requests=300, write=False, progress=False)
    run_file, qrels_file = write_trec_run(report, tmp_path / "rankings.trec")
    assert qrels_file == tmp_path / "rankings.qrels"
    qrels = Qrels.from_file(str(qrels_file), kind="trec")
    assert len(qrels.keys()) == len(report.targets) > 100
    for name in ("popularity", "bm25"):
        ours = report.value(name, "ndcg@10")[0]
        assert ours > 0  # a comparison of zeros would prove nothing
        theirs = evaluate(qrels, _read(run_file, name), "ndcg@10", make_comparable=True)
        assert theirs == pytest.approx(ours, abs=1e-9), name
        mrr = evaluate(qrels, _read(run_file, name), "mrr@20", make_comparable=True)
        assert mrr == pytest.approx(report.value(name, "mrr")[0], abs=1e-9)


def test_each_line_is_qid_q0_docid_rank_score_tag_in_harness_order(run_folder, tmp_path):
    report = run_evaluation(run_folder, ["popularity"], config=EvalConfig(k=5, bootstrap=10), max_requests=4,
                            write=False, progress=False)
    run_file, _ = write_trec_run(report, tmp_path / "r.trec")
    lines = [line.split() for line in run_file.read_text().splitlines()]
    first = [line for line in lines if line[0] == "0"]
    assert [int(line[2]) for line in first] == [int(i) for i in report.results["popularity"].ranked[0] if i >= 0]
    assert [int(line[3]) for line in first] == list(range(1, len(first) + 1))
    assert [float(line[4]) for line in first] == sorted((float(line[4]) for line in first), reverse=True)
    assert {line[5] for line in lines} == {"popularity"}


def test_the_cli_writes_both_files_and_refuses_a_qrels_name(run_folder, tmp_path, capsys):
    argv = ["eval", "--run", str(run_folder), "--retrievers", "popularity", "--max-requests", "20", "--bootstrap", "10",
            "--no-write"]
    assert main([*argv, "--trec-run", str(tmp_path / "out.trec")]) == 0
    assert (tmp_path / "out.trec").read_text().count("popularity") > 0
    assert len((tmp_path / "out.qrels").read_text().splitlines()) == 20
    assert main([*argv, "--trec-run", str(tmp_path / "out.qrels")]) == 2
    assert "ends in .qrels" in capsys.readouterr().err
