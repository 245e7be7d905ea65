"""The server under bad artefacts, bad bytes and greedy clients.

Each section answers one way a deployed server has failed: a corrupt model
accepted by reload (and invisible to monitoring), JSON that crashed the error
handler, work without limits, and details shown to anyone who asks.
In-process tests use FastAPI's TestClient; the connection-level ones run a
real uvicorn server on a loopback port.
"""

from __future__ import annotations

import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from serve_fakes import FakeRetriever, WeightedFakeRetriever, free_port, running, save_run, save_weighted_run, tiny_dataset

from genrec.retrieval import Ranked
from genrec.serve.app import create_app
from genrec.serve.connections import uvicorn_config
from genrec.serve.limits import ServeLimits
from genrec.serve.model import load_served_model

TOKEN = "s3cret-token"
AUTH = {"X-Admin-Token": TOKEN}


def weighted_loader(run: Path):
    return load_served_model(run, ["fake"], build=lambda name, r, dataset, split: WeightedFakeRetriever.from_run(r, dataset))


def plain_loader(**options):
    return lambda run: load_served_model(run, ["fake"], build=lambda n, r, d, s: FakeRetriever(d, **options))


@pytest.fixture()
def good_run(tmp_path) -> Path:
    return save_weighted_run(tmp_path / "good", tiny_dataset(), weight=1.0)


@pytest.fixture()
def served(good_run):
    app = create_app(good_run, loader=weighted_loader, background_load=False, admin_token=TOKEN)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


# --- 1. a corrupt model is never swapped in, and versions tell models apart ----------------------


def _reload_is_rejected_and_the_old_model_serves(client, run: Path, reason: str) -> None:
    before = client.get("/healthz").json()
    answer = client.post("/admin/reload", json={"run": str(run)}, headers=AUTH)
    assert answer.status_code == 422, answer.text
    assert "still serving" in answer.json()["detail"] and reason in answer.json()["detail"]
    assert client.get("/healthz").json() == before
    search = client.get("/search", params={"q": "running shoe"}).json()
    assert search["model_version"] == before["model_version"] and search["hits"]


def test_a_nan_checkpoint_is_rejected_and_the_old_model_keeps_serving(served, tmp_path):
    nan_run = save_weighted_run(tmp_path / "nan", tiny_dataset(), weight=float("nan"))
    _reload_is_rejected_and_the_old_model_serves(served, nan_run, "not finite")


def test_an_infinite_weight_is_rejected(served, tmp_path):
    _reload_is_rejected_and_the_old_model_serves(served, save_weighted_run(tmp_path / "inf", tiny_dataset(), weight=float("inf")), "not finite")


def test_a_truncated_checkpoint_is_rejected(served, tmp_path):
    run = save_weighted_run(tmp_path / "cut", tiny_dataset(), weight=2.0)
    weights = run / "train" / "fake" / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:40])
    _reload_is_rejected_and_the_old_model_serves(served, run, "could not be built")


def test_a_sid_table_other_than_the_one_the_model_was_trained_on_is_rejected(served, tmp_path):
    run = save_weighted_run(tmp_path / "sid", tiny_dataset(), weight=2.0)
    (run / "sid" / "sids.txt").write_text("3,2,1")  # replaced after training
    _reload_is_rejected_and_the_old_model_serves(served, run, "SID table")


def test_a_model_that_answers_nothing_is_rejected_by_the_canary(tmp_path):
    good = save_run(tmp_path / "good", tiny_dataset())
    mute = save_run(tmp_path / "mute", tiny_dataset())

    class Mute(FakeRetriever):
        def retrieve(self, requests, k):
            return [Ranked(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)) for _ in requests]

    def loader(run):
        build = (lambda n, r, d, s: Mute(d)) if run == mute else (lambda n, r, d, s: FakeRetriever(d))
        return load_served_model(run, ["fake"], build=build)

    app = create_app(good, loader=loader, background_load=False, admin_token=TOKEN)
    with TestClient(app) as client:
        _reload_is_rejected_and_the_old_model_serves(client, mute, "canary")


def test_model_version_hashes_the_weights_not_only_the_manifests(tmp_path):
    one = save_weighted_run(tmp_path / "one", tiny_dataset(), weight=1.0)
    two = Path(shutil.copytree(one, tmp_path / "two"))  # every manifest byte-identical ...
    torch.save({"weight": torch.full((1, 1), 2.0)}, two / "train" / "fake" / "weights.pt")  # ... the weights not
    app = create_app(one, loader=weighted_loader, background_load=False, admin_token=TOKEN)
    with TestClient(app) as client:
        first = client.get("/healthz").json()["model_version"]
        swapped = client.post("/admin/reload", json={"run": str(two)}, headers=AUTH).json()
        assert swapped["previous_version"] == first and swapped["model_version"] != first
        again = client.post("/admin/reload", json={"run": str(one)}, headers=AUTH).json()
        assert again["model_version"] == first  # same weights, same version


def test_a_corrupt_run_at_startup_answers_503_and_says_why_only_to_the_admin(tmp_path):
    nan_run = save_weighted_run(tmp_path / "nan", tiny_dataset(), weight=float("nan"))
    app = create_app(nan_run, loader=weighted_loader, background_load=False, admin_token=TOKEN)
    with TestClient(app) as client:
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "failed"
        assert str(tmp_path) not in health.text and "not finite" not in health.text
        assert client.get("/search", params={"q": "shoe"}).status_code == 503
        status = client.get("/admin/status", headers=AUTH).json()
        assert status["status"] == "failed" and "not finite" in status["detail"] and status["run"] == str(nan_run)


# --- 3. JSON the standard library accepts but the answer cannot echo -----------------------------

BAD_JSON_BODIES = [
    rb'{"requests": [{"query": "\ud800"}]}',                    # lone surrogate
    rb'{"requests": [{"query": "a\udfffb", "k": 1}]}',
    rb'{"retriever": "\ud800", "requests": [{"query": "a"}]}',
    rb'{"requests": [{"\ud800": 1}]}',
    rb'{"requests": [{"query": "a", "k": NaN}]}',
    rb'{"requests": [{"query": "a", "k": Infinity}]}',
    rb'{"requests": [{"query": "a", "k": -Infinity}]}',
    rb'{"requests": [{"query": "a", "k": 1e999}]}',
    rb'{"requests": [{"user_id": 1' + b"0" * 5000 + rb'}]}',    # past Python's int-parsing limit
    rb'{"requests": [{"user_id": 123456789012345678901234567890}]}',
    b'{"requests": [{"query": "\xed\xa0\x80"}]}',              # a surrogate as raw (invalid) UTF-8
    b'{"requests": [{"query": "\xff"}]}',
    b'{"requests": [',
]


@pytest.mark.parametrize("body", BAD_JSON_BODIES)
def test_json_edge_cases_are_a_422_not_a_500(served, body):
    answer = served.post("/retrieve", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/json") and answer.json()["detail"]


def test_a_valid_surrogate_pair_is_still_a_fine_query(served):
    answer = served.post("/retrieve", content=rb'{"requests": [{"query": "shoe \ud83d\ude00"}]}',
                         headers={"content-type": "application/json"})
    assert answer.status_code == 200 and answer.json()["answers"][0]["query"] == "shoe \U0001F600"


@pytest.mark.parametrize("body", [
    {"requests": [{"query": "a", "k": True}]}, {"requests": [{"query": "a", "k": "5"}]},
    {"requests": [{"query": "a", "k": 5.0}]}, {"requests": [{"user_id": True}]}, {"requests": [{"query": 5}]},
    {"requests": [{"user_id": "7"}]}, {"retriever": 1, "requests": [{"query": "a"}]},
])
def test_types_are_strict_in_json_bodies(served, body):
    assert served.post("/retrieve", json=body).status_code == 422


def test_reload_body_types_are_strict_too(served):
    assert served.post("/admin/reload", json={"run": True}, headers=AUTH).status_code == 422


# --- 4. limits on what one unauthenticated call may cost ---------------------------------------


def _limited_client(run: Path, limits: ServeLimits, **fake_options) -> TestClient:
    app = create_app(run, loader=plain_loader(**fake_options), background_load=False, admin_token=TOKEN, limits=limits)
    return TestClient(app, raise_server_exceptions=False)


def test_a_body_over_the_limit_is_413_whether_announced_or_streamed(tmp_path):
    with _limited_client(save_run(tmp_path, tiny_dataset()), ServeLimits(max_body_bytes=1000)) as client:
        big = b'{"requests": [{"query": "' + b"x" * 2000 + b'"}]}'
        assert client.post("/retrieve", content=big, headers={"content-type": "application/json"}).status_code == 413
        streamed = client.post("/retrieve", content=iter([big[:600], big[600:]]), headers={"content-type": "application/json"})
        assert streamed.status_code == 413 and "1000" in streamed.json()["detail"]
        assert client.post("/retrieve", json={"requests": [{"query": "hat"}]}).status_code == 200


def test_the_default_body_limit_refuses_a_100_mb_body(served):
    answer = served.post("/retrieve", content=b" " * 100_000_000, headers={"content-type": "application/json"})
    assert answer.status_code == 413


def test_k_requests_query_and_history_limits_are_configurable_4xx(tmp_path):
    limits = ServeLimits(max_k=5, max_requests_per_call=3, max_query_chars=20, max_history=4)
    with _limited_client(save_run(tmp_path, tiny_dataset()), limits) as client:
        assert client.get("/search", params={"q": "hat", "k": 5}).status_code == 200
        assert client.get("/search", params={"q": "hat", "k": 6}).status_code == 422
        assert client.get("/recommend", params={"k": 6}).status_code == 422
        assert client.post("/retrieve", json={"requests": [{"query": "a", "k": 6}]}).status_code == 422
        assert client.post("/retrieve", json={"requests": [{"query": "a"}] * 3}).status_code == 200  # default k: 5, not 10
        too_many = client.post("/retrieve", json={"requests": [{"query": "a"}] * 4})
        assert too_many.status_code == 422 and "3" in str(too_many.json()["detail"])
        assert client.get("/search", params={"q": "x" * 21}).status_code == 422
        assert client.post("/retrieve", json={"requests": [{"query": "x" * 21}]}).status_code == 422
        assert client.get("/users/1", params={"recent": 4}).status_code == 200
        assert client.get("/users/1", params={"recent": 5}).status_code == 422


def test_the_default_limits_refuse_256_requests_of_k_1000(served):
    assert served.post("/retrieve", json={"requests": [{"query": "a", "k": 1000}] * 256}).status_code == 422
    assert served.get("/search", params={"q": "shoe", "k": 1000}).status_code == 422


def test_a_call_over_its_compute_time_answers_503_and_the_server_stays_up(tmp_path):
    gate = threading.Event()
    with _limited_client(save_run(tmp_path, tiny_dataset()), ServeLimits(max_call_s=0.3), gate=gate) as client:
        gate.set()  # the canary at load time passes the gate
        gate.clear()
        slow = client.get("/search", params={"q": "hat"})
        assert slow.status_code == 503 and "0.3" in slow.json()["detail"] and slow.headers["retry-after"]
        gate.set()
        assert client.get("/search", params={"q": "hat"}).status_code == 200


def test_admin_calls_are_rate_limited_per_client(tmp_path):
    limits = ServeLimits(admin_calls_per_minute=3)
    with _limited_client(save_run(tmp_path, tiny_dataset()), limits) as client:
        codes = [client.post("/admin/reload", headers={"X-Admin-Token": "guess"}).status_code for _ in range(5)]
        assert codes == [401, 401, 401, 429, 429]
        limited = client.post("/admin/reload", headers=AUTH)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


# --- 6. nothing internal shown to the public; HEAD and /docs ------------------------------------


def test_public_endpoints_show_no_paths(served, good_run):
    assert str(good_run) not in served.get("/healthz").text
    assert str(good_run) not in served.get("/metrics").text
    status = served.get("/admin/status", headers=AUTH)
    assert status.status_code == 200 and status.json()["run"] == str(good_run)
    assert served.get("/admin/status").status_code == 401


def test_head_on_the_page_answers(served):
    head = served.head("/")
    assert head.status_code == 200 and head.content == b""


def test_no_page_loads_script_from_a_cdn(served):
    assert served.get("/docs").status_code == 404 and served.get("/redoc").status_code == 404
    assert served.get("/openapi.json").status_code == 200
    assert "http" not in served.get("/").text.replace("http-equiv", "")


# --- connections: a real server on a loopback port ---------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A uvicorn server configured as `genrec serve` configures it, with a 0.5 s idle timeout."""
    run = save_run(tmp_path_factory.mktemp("live"), tiny_dataset())
    app = create_app(run, loader=plain_loader(), background_load=False, admin_token=TOKEN)
    port = free_port()
    with running(uvicorn_config(app, "127.0.0.1", port, ServeLimits(keep_alive_s=0.5), log_level="error")):
        yield port


def _exchange(sock: socket.socket, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP/1.1 request on an open keep-alive socket; returns (status, body)."""
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    sock.sendall(head + body)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    header, rest = data.split(b"\r\n\r\n", 1)
    length = int(next(line.split(b":")[1] for line in header.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        rest += chunk
    return int(header.split()[1]), rest


def test_bad_json_keeps_the_keep_alive_connection(live):
    with socket.create_connection(("127.0.0.1", live), timeout=10) as sock:
        for body in BAD_JSON_BODIES[:8]:
            status, _ = _exchange(sock, "POST", "/retrieve", body)
            assert status == 422
        status, answer = _exchange(sock, "POST", "/retrieve", b'{"requests": [{"query": "hat"}]}')
        assert status == 200 and b'"item_id":3' in answer


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True
    except (socket.timeout, TimeoutError):
        return False
    except ConnectionResetError:
        return True


def test_an_idle_connection_is_closed(live):
    with socket.create_connection(("127.0.0.1", live), timeout=10) as silent:
        assert _closed_within(silent, 5.0)


def test_a_half_sent_request_is_closed(live):
    with socket.create_connection(("127.0.0.1", live), timeout=10) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert _closed_within(slow, 5.0)


def test_a_kept_alive_connection_is_closed_after_it_goes_idle(live):
    with socket.create_connection(("127.0.0.1", live), timeout=10) as sock:
        assert _exchange(sock, "GET", "/healthz")[0] == 200
        assert _closed_within(sock, 5.0)


def test_serve_command_refuses_a_limit_that_is_not_positive(tmp_path, capsys):
    from genrec.cli import main

    run = save_run(tmp_path, tiny_dataset())
    assert main(["serve", str(run), "--max-k", "0"]) == 2
    assert "max_k" in capsys.readouterr().err
    assert main(["serve", str(run), "--keep-alive-s", "nan"]) == 2


def test_serving_a_run_whose_models_were_never_trained_refuses_without_training(small_sid_run):
    """Loading never trains: the server names the stage to run instead of training inside itself."""
    from genrec.serve.model import RunLoadError, load_served_model

    before = sorted(p.relative_to(small_sid_run) for p in small_sid_run.rglob("*"))
    for name, command in (("generative", "genrec train --run .* --model generative"),
                          ("sasrec", "genrec train --run .* --model sasrec"),
                          ("cascade", "genrec cascade train --run")):
        with pytest.raises(RunLoadError, match=command):
            load_served_model(small_sid_run, [name])
    assert sorted(p.relative_to(small_sid_run) for p in small_sid_run.rglob("*")) == before  # nothing written
