"""`genrec train --model generative` under a real 2-process torchrun (gloo, CPU) takes the
steps one process takes with the same global batch, and only rank 0 writes and prints —
on one machine, and with two torchrun agents meeting at a rendezvous as two machines do."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import genrec
from genrec.cli import main as genrec_main
from genrec.sid.table import SidTable

# A model small enough for seconds of CPU; dropout 0 because each rank draws its own dropout
# masks (seeded by rank), so with dropout two processes train an equally good but other model;
# fp32 because two half batches equal one whole batch only to fp32's rounding, not bf16's.
TINY = ["model.d_model=32", "model.n_heads=2", "model.d_ff=64", "model.n_encoder_layers=1", "model.n_decoder_layers=1",
        "model.max_short=6", "model.dropout=0", "train.steps=6", "train.batch_size=32", "train.eval_every=3",
        "train.checkpoint_every=3", "train.warmup_steps=1", "valid_requests=40", "beams=10", "query_vectors=false",
        "train.cpu_bf16=false"]


def _train_arguments(run: Path) -> list[str]:
    sets = [word for value in TINY for word in ("--set", value)]
    return ["train", "--run", str(run), "--model", "generative", "--device", "cpu", *sets]


@pytest.fixture(scope="module")
def one_process(small_world, tmp_path_factory) -> tuple[Path, dict]:
    """A run folder with the small world and block SIDs (as `small_sid_run`), trained by one
    process through the CLI, and the summary it printed: what the torchrun runs must equal."""
    run = tmp_path_factory.mktemp("one_process") / "run"
    ids = small_world.dataset.items["item_id"].to_numpy()
    index = np.arange(len(ids))
    small_world.save(run / "data")
    SidTable(ids, np.stack([index // 64, (index // 8) % 8, index % 8], axis=1), [10, 8, 8]).save(run / "sid")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert genrec_main(_train_arguments(run)) == 0
    return run, json.loads(printed.getvalue())


def _torchrun(run: Path, logs: Path, *launcher: str) -> tuple[subprocess.Popen, Path]:
    """`python -m torch.distributed.run LAUNCHER... -m genrec.cli -- train ...`: the documented invocation
    (`--` keeps torchrun from reading `--run` as its own `--run-path`), started, not waited for; its
    stdout and stderr go to files under `logs` (two agents wait on each other: a full pipe would hang them)."""
    command = [sys.executable, "-m", "torch.distributed.run", *launcher, "-m", "genrec.cli", "--", *_train_arguments(run)]
    source = str(Path(genrec.__file__).parents[1])  # this checkout's genrec, installed or not
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    logs.mkdir(parents=True)
    with (logs / "out").open("w") as out, (logs / "err").open("w") as err:
        return subprocess.Popen(command, stdout=out, stderr=err, env=env), logs


def _finish(*started: tuple[subprocess.Popen, Path]) -> list[tuple[str, str]]:
    """Each agent's (stdout, stderr) once all have exited, each having succeeded."""
    for process, _ in started:
        process.wait(timeout=240)
    outputs = [((logs / "out").read_text(), (logs / "err").read_text()) for _, logs in started]
    for (process, _), (_, err) in zip(started, outputs):
        assert process.returncode == 0, err[-3000:]
    return outputs


def _assert_trained_like_one_process(run: Path, printed: str, logged: str, one_process: tuple[Path, dict]) -> None:
    single_run, single_summary = one_process
    # Printed once: two ranks printing would be two JSON documents, which json.loads refuses.
    summary = json.loads(printed)
    assert summary["n_examples"] == single_summary["n_examples"] and summary["best_step"] == single_summary["best_step"]
    assert logged.count("genrec.train.loop: step 6:") == 1  # the evaluation line, from rank 0 only

    folder, single_folder = (r / "train" / "generative" for r in (run, single_run))
    for name in ("config.json", "encoder.json", "manifest.json", "best.pt", "last.pt", "metrics.csv"):
        assert (folder / name).is_file(), name
    assert json.loads((folder / "config.json").read_text()) == json.loads((single_folder / "config.json").read_text())
    rows = list(csv.DictReader((folder / "metrics.csv").open()))  # one row per logged step: rank 0 alone appends
    assert [r["step"] for r in rows] == [r["step"] for r in csv.DictReader((single_folder / "metrics.csv").open())]

    distributed = torch.load(folder / "last.pt", weights_only=True)
    single = torch.load(single_folder / "last.pt", weights_only=True)
    assert distributed["step"] == single["step"] == 6
    # Equal up to float summation order: gloo sums the two ranks' gradients, one process sums
    # over the whole batch in one backward pass, and each half-batch is padded to its own width.
    # Measured: 1.5e-6 at most after 6 steps. Without weighting each rank's loss by its share of
    # the batch's targets (windows hold 1 to 7 targets here) the weights differ by ~1e-2.
    for name, tensor in single["model"].items():
        torch.testing.assert_close(distributed["model"][name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    # The reported loss is the global batch's, not rank 0's half.
    assert distributed["losses"] == pytest.approx(single["losses"], rel=1e-5)


@pytest.mark.slow
def test_two_torchrun_processes_train_the_weights_one_process_trains_and_only_rank_0_writes(one_process, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(one_process[0] / "data", run / "data")
    shutil.copytree(one_process[0] / "sid", run / "sid")
    [(printed, logged)] = _finish(_torchrun(run, tmp_path / "logs", "--standalone", "--nproc_per_node=2"))
    _assert_trained_like_one_process(run, printed, logged, one_process)


@pytest.mark.slow
def test_two_torchrun_agents_meeting_at_a_rendezvous_as_two_machines_would_train_the_same_weights(one_process, tmp_path):
    """docs/scale.md's multi-machine recipe, both "machines" on this one: two agents, one process
    each, found each other through the c10d rendezvous (a shared run folder, as on shared storage)."""
    run = tmp_path / "run"
    shutil.copytree(one_process[0] / "data", run / "data")
    shutil.copytree(one_process[0] / "sid", run / "sid")
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launcher = ("--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}",
                f"--rdzv_id=genrec-test-{port}")
    outputs = _finish(*(_torchrun(run, tmp_path / f"agent{i}", *launcher) for i in range(2)))
    printed = [out for out, _ in outputs if out.strip()]
    assert len(printed) == 1  # the agent that hosts rank 0 prints the summary; the other prints nothing
    _assert_trained_like_one_process(run, printed[0], "".join(err for _, err in outputs), one_process)


def test_outside_torchrun_every_helper_is_a_no_op_and_the_torchrun_rank_decides_who_writes(monkeypatch):
    from genrec.train import distributed

    monkeypatch.delenv("RANK", raising=False)
    assert distributed.is_main() and distributed.world_size() == 1 and distributed.from_main([3]) == [3]
    with distributed.main_first():
        distributed.barrier()
    monkeypatch.setenv("RANK", "1")  # a torchrun worker before it joins the group, or after it left
    assert not distributed.is_main()


def test_ranks_other_than_0_log_warnings_only(monkeypatch):
    import logging

    from genrec.console_log import configure_logging

    logger = logging.getLogger("genrec")
    handlers, level = list(logger.handlers), logger.level
    try:
        monkeypatch.setenv("RANK", "1")
        configure_logging(logging.INFO)
        assert logger.level == logging.WARNING
        monkeypatch.setenv("RANK", "0")
        configure_logging(logging.INFO)
        assert logger.level == logging.INFO
    finally:  # leave the library's logger as other tests expect it
        logger.handlers[:] = handlers
        logger.setLevel(level)
