"""Serving fast without serving anything else: the lean answer path, the exact inference mode the
server decodes with, and `genrec serve --workers N` (N processes on one port, reloaded by SIGHUP)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from serve_fakes import FakeRetriever, running, save_run, tiny_dataset

from genrec.serve.app import create_app
from genrec.serve.model import SERVED_PRECISION, fastest_exact, load_served_model
from genrec.serve.schemas import RetrieveAnswer, RetrieveBatchAnswer
from genrec.serve.workers import torch_threads

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-token"


def fake_loader(run):
    return load_served_model(run, ["fake"], build=lambda name, run, dataset, split: FakeRetriever(dataset, name=name))


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    return save_run(tmp_path_factory.mktemp("run"), tiny_dataset())


def expected_answer(run: Path, query: str | None, user_id: int | None, k: int) -> dict:
    """The answer built the slow, obvious way: the retriever called in process, through the pydantic schema."""
    model = fake_loader(run)
    ranked = model.retrievers["fake"].retrieve([model.request(user_id, query)], k)[0]
    hits = [{**model.item(i), "rank": rank, "score": float(s)}
            for rank, (i, s) in enumerate(zip(ranked.item_ids.tolist(), ranked.scores.tolist()), start=1)]
    answer = RetrieveAnswer(retriever="fake", model_version=model.version, user_id=user_id, query=query, k=k, hits=hits)
    return answer.model_dump(mode="json")


def test_search_recommend_and_batch_answers_are_the_schema_and_the_in_process_retrievers(run_folder):
    app = create_app(run_folder, loader=fake_loader, background_load=False)
    with TestClient(app) as client:
        search = client.get("/search", params={"q": " running shoe ", "user_id": 1, "k": 3})
        recommend = client.get("/recommend", params={"user_id": 2, "k": 4})
        cold = client.get("/recommend", params={"k": 2})
        batch = client.post("/retrieve", json={"requests": [{"query": "hat", "user_id": 3, "k": 2}, {"user_id": 1}]})
    assert search.json() == expected_answer(run_folder, "running shoe", 1, 3)
    assert recommend.json() == expected_answer(run_folder, None, 2, 4)
    assert cold.json() == expected_answer(run_folder, None, None, 2)
    assert batch.json() == {"answers": [expected_answer(run_folder, "hat", 3, 2), expected_answer(run_folder, None, 1, 10)]}
    RetrieveBatchAnswer.model_validate(batch.json())
    for response in (search, recommend, batch):
        assert response.headers["content-type"] == "application/json"


def _small_generative_retriever(small_world):
    from tiny_generative import tiny_generative

    from genrec.model.retriever import GenerativeRetriever

    model, encoder, trie = tiny_generative(small_world, seed=5)
    return GenerativeRetriever(model, encoder, trie, beams=8, max_beams=16)


def test_the_server_decodes_a_generative_model_in_the_exact_fast_mode_and_leaves_others_alone(small_world):
    from genrec.data.splits import build_requests, leave_one_out

    reference = _small_generative_retriever(small_world)
    served = fastest_exact(reference)
    assert served.precision == SERVED_PRECISION == "fp32"
    assert (served.beams, served.max_beams, served.batch_size) == (reference.beams, reference.max_beams, reference.batch_size)
    assert served.model is reference.model and served.trie is reference.trie  # a second decoder, not a second model
    assert fastest_exact(served) is served
    requests, _ = build_requests(leave_one_out(small_world.dataset.events), "test")
    requests = [r for r in requests if r.is_search][:6] + [r for r in requests if not r.is_search][:6]
    for want, got in zip(reference.retrieve(requests, 5), served.retrieve(requests, 5)):
        np.testing.assert_array_equal(got.item_ids, want.item_ids)
    fake = FakeRetriever(tiny_dataset())
    assert fastest_exact(fake) is fake


def test_the_aligned_model_is_served_in_the_fast_mode_too_with_its_own_settings(small_world):
    """`generative-aligned` (a subclass that answers with the base class's code) is served by the exact
    fast decoder under its own name; settings given to the retriever, not read from the model, carry
    over; a subclass with its own `retrieve` is left alone."""
    from tiny_generative import tiny_generative

    from genrec.align.retriever import AlignedGenerativeRetriever
    from genrec.data.splits import build_requests, leave_one_out
    from genrec.model.retriever import GenerativeRetriever

    model, encoder, trie = tiny_generative(small_world, seed=5)
    aligned = AlignedGenerativeRetriever(model, encoder, trie, beams=8, max_beams=16, item_head_mix=0.0,
                                         exclude_history=True)
    served = fastest_exact(aligned)
    assert type(served) is AlignedGenerativeRetriever and served.name == "generative-aligned"
    assert served.precision == SERVED_PRECISION and served.item_head_mix == 0.0 and served.model is model
    assert served.exclude_history and served.keep_item_vectors and aligned.precision is None  # the original untouched
    requests, _ = build_requests(leave_one_out(small_world.dataset.events), "test")
    requests = requests[:12]
    for want, got in zip(aligned.retrieve(requests, 5), served.retrieve(requests, 5)):
        np.testing.assert_array_equal(got.item_ids, want.item_ids)

    class Reranked(GenerativeRetriever):
        def retrieve(self, requests, k):
            return super().retrieve(requests, k)[::-1]

    own = Reranked(model, encoder, trie, beams=8, max_beams=16)
    assert fastest_exact(own) is own


def test_torch_threads_are_shared_out_among_workers_unless_set(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = os.cpu_count() or 1
    assert torch_threads(1, None) is None  # one worker: torch's own default, as before
    assert torch_threads(2, None) == max(1, cores // 2)
    assert torch_threads(4 * cores, None) == 1
    assert torch_threads(2, 3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert torch_threads(2, None) is None  # the environment decides
    with pytest.raises(ValueError, match="threads"):
        torch_threads(2, 0)


def test_a_worker_refuses_to_start_on_a_run_folder_it_cannot_serve(tmp_path):
    """So a SIGHUP restart keeps the old workers, and a first start stops instead of answering 503 for ever."""
    app = create_app(tmp_path / "missing", loader=fake_loader, workers=2)
    with pytest.raises(RuntimeError, match="could not load"):
        with TestClient(app):
            pass


def test_a_worker_refuses_the_reload_endpoint_and_says_how_to_reload(run_folder):
    app = create_app(run_folder, loader=fake_loader, admin_token=TOKEN, workers=2)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200  # startup waited for the model
        refused = client.post("/admin/reload", headers={"X-Admin-Token": TOKEN})
        assert refused.status_code == 409 and "SIGHUP" in refused.json()["detail"]
        assert client.post("/admin/reload").status_code == 401  # the token is still checked first


def test_a_connection_accepted_from_the_workers_shared_socket_sends_without_delay(run_folder):
    """asyncio leaves Nagle's algorithm on for sockets like the one `--workers` binds (`proto` 0); the
    server's protocol turns it off, or each kept-alive answer waits for the client's delayed ACK."""
    import asyncio

    from uvicorn.server import ServerState

    from genrec.serve.connections import IdleTimeoutH11Protocol, uvicorn_config

    config = uvicorn_config(create_app(run_folder, loader=fake_loader), "127.0.0.1", 0)
    config.load()
    listener = config.bind_socket()
    listener.listen()

    async def accept_one() -> tuple[int, int]:
        with socket.create_connection(listener.getsockname()[:2]):
            accepted, _ = listener.accept()
            before = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            protocol = IdleTimeoutH11Protocol(config=config, server_state=ServerState(), app_state={})
            transport, _ = await asyncio.get_running_loop().connect_accepted_socket(lambda: protocol, accepted)
            after = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            transport.close()
            return before, after

    try:
        before, after = asyncio.run(accept_one())
    finally:
        listener.close()
    assert before == 0 and after != 0


def _read_all(connection: socket.socket) -> bytes:
    connection.settimeout(10)
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_connection_accepted_just_before_a_graceful_shutdown_is_answered_then_closed(run_folder):
    """A reload stops old workers while the shared socket still hands them connections: one whose request
    is still on the way when shutdown begins gets its answer and is then closed, not closed unanswered;
    one already answered and idle is closed as uvicorn closes it."""
    from genrec.serve.connections import uvicorn_config

    config = uvicorn_config(create_app(run_folder, loader=fake_loader), "127.0.0.1", _free_port())
    address = ("127.0.0.1", config.port)
    with running(config) as server:
        deadline = time.monotonic() + 30
        while httpx.get(f"http://{address[0]}:{address[1]}/healthz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        answered, fresh = socket.create_connection(address), socket.create_connection(address)
        with answered, fresh:
            answered.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answered.settimeout(10)
            assert answered.recv(65536).startswith(b"HTTP/1.1 200")
            time.sleep(0.2)  # the server has accepted `fresh`; its request is not sent yet
            server.should_exit = True
            time.sleep(0.5)  # shutdown has begun: the listening socket is closed, connections told to shut down
            fresh.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = _read_all(fresh)  # returns at end of stream: the server closes the connection after answering
            assert reply.startswith(b"HTTP/1.1 200"), reply[:80]
            assert reply.endswith(b"}")  # the whole answer
            assert _read_all(answered) == b""  # the idle, already answered connection was closed


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker_pids(url: str, workers: int) -> set[str]:
    """The pids of the worker processes answering on `url` (a new connection reaches one of them)."""
    seen: set[str] = set()
    for _ in range(200):
        text = httpx.get(url + "/metrics", headers={"Connection": "close"}, timeout=10).text
        seen |= {line.split('"')[1] for line in text.splitlines() if line.startswith("genrec_worker{")}
        if len(seen) >= workers:
            break
    return seen


def _wait_healthy(process: subprocess.Popen, url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode()[-2000:] if process.stderr else ""
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not become healthy")


@pytest.mark.timeout(300)
def test_serve_with_two_workers_answers_from_both_and_sighup_replaces_them_without_an_error(tmp_path):
    run = save_run(tmp_path / "run", tiny_dataset())
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "GENREC_ADMIN_TOKEN": TOKEN}
    process = subprocess.Popen([sys.executable, "-m", "genrec.cli", "serve", str(run), "--retrievers", "bm25",
                                "--workers", "2", "--port", str(port), "--log-level", "error"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_healthy(process, url)
        first = _worker_pids(url, 2)
        assert len(first) == 2
        in_process = load_served_model(run, ["bm25"])
        want = in_process.retrievers["bm25"].retrieve([in_process.request(1, "running shoe")], 3)[0]
        for _ in range(6):  # new connections, so both workers answer some
            got = httpx.get(url + "/search", params={"q": "running shoe", "user_id": 1, "k": 3},
                            headers={"Connection": "close"}, timeout=10).json()
            assert [hit["item_id"] for hit in got["hits"]] == want.item_ids.tolist()
        assert httpx.post(url + "/admin/reload", headers={"X-Admin-Token": TOKEN}, timeout=10).status_code == 409

        process.send_signal(signal.SIGHUP)
        statuses = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            statuses.append(httpx.get(url + "/search", params={"q": "hat", "k": 2}, timeout=30).status_code)
            now = _worker_pids(url, 2)
            if len(now) == 2 and not now & first:
                break
            time.sleep(0.2)
        assert not now & first, "the workers were not replaced"
        assert set(statuses) == {200}
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert process.returncode is not None


def test_writes_made_together_leave_together_and_close_sends_what_is_pending():
    import asyncio

    from genrec.serve.connections import CoalescedWrites

    class Recording:
        def __init__(self):
            self.sent: list[bytes] = []
            self.closed = False

        def write(self, data: bytes) -> None:
            self.sent.append(data)

        def is_closing(self) -> bool:
            return self.closed

        def close(self) -> None:
            self.closed = True

        def get_extra_info(self, name: str):
            return ("127.0.0.1", 1) if name == "peername" else None

    async def scenario() -> tuple[list[bytes], list[bytes], Recording]:
        recording = Recording()
        transport = CoalescedWrites(recording, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"")
        transport.write(b'{"hits": []}')
        during = list(recording.sent)
        await asyncio.sleep(0)
        after_step = list(recording.sent)
        transport.write(b"last")
        transport.close()
        assert transport.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest is the wrapped transport's
        return during, after_step, recording

    during, after_step, recording = asyncio.run(scenario())
    assert during == [] and after_step == [b'HTTP/1.1 200 OK\r\n\r\n{"hits": []}']
    assert recording.sent[-1] == b"last" and recording.closed


QUERY_STRINGS = [
    "q=running+shoe", "q=running+shoe&user_id=1&k=3", "q=%20hat%20&k=2&retriever=fake", "q=shoe&k=007",
    "q=shoe&k=5.0", "q=shoe&k=0", "q=shoe&k=101", "q=shoe&k=100", "q=shoe&user_id=-1", "q=shoe&user_id=",
    "q=shoe&user_id=9223372036854775807", "q=shoe&user_id=9223372036854775808", "q=shoe&k=2&k=3", "q=",
    "q=%20%20", "q=shoe&retriever=nope", "q=shoe&retriever=", "q=shoe&unknown=1", "k=3", "q=" + "x" * 513,
    "q=" + "x" * 512, "q=%ff%fe", "q=caf%C3%A9&user_id=2",
]


@pytest.mark.parametrize("path", ["/search", "/recommend"])
def test_the_quick_path_answers_exactly_as_the_fastapi_routes_do(run_folder, path):
    """Every status, header and byte of the body is what the routes alone give, valid input or not."""
    quick = create_app(run_folder, loader=fake_loader, background_load=False)
    routes_only = create_app(run_folder, loader=fake_loader, background_load=False)
    routes_only.user_middleware = [m for m in routes_only.user_middleware if m.cls.__name__ != "QuickRetrieve"]
    assert len(routes_only.user_middleware) == len(quick.user_middleware) - 1
    with TestClient(quick) as fast, TestClient(routes_only) as slow:
        for query in QUERY_STRINGS:
            want, got = slow.get(f"{path}?{query}"), fast.get(f"{path}?{query}")
            assert (got.status_code, got.content) == (want.status_code, want.content), query
            assert got.headers.get("content-type") == want.headers.get("content-type"), query
        metrics = fast.get("/metrics").text
    assert f'route="{path}",status="200"' in metrics  # requests answered by the quick path keep their route label


def test_a_loaded_model_is_left_out_of_later_garbage_collections(run_folder):
    import gc

    gc.unfreeze()
    try:
        app = create_app(run_folder, loader=fake_loader, background_load=False)
        with TestClient(app) as client:
            model = app.state.genrec.live.model
            assert gc.get_freeze_count() > 0
            assert client.get("/search", params={"q": "shoe"}).status_code == 200
            assert not any(obj is model.items_by_id for obj in gc.get_objects())  # frozen objects are not walked
    finally:
        gc.unfreeze()


def test_keep_freed_memory_is_set_where_glibc_is():
    import platform

    from genrec.serve.workers import keep_freed_memory

    assert keep_freed_memory() is (platform.libc_ver()[0] == "glibc")
