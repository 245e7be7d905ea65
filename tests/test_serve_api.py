"""The serving API: answers, error codes, micro-batching, reload and metrics.

Everything runs in-process through FastAPI's TestClient over a tiny hand-made
run folder and a fake retriever that records its batch sizes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from serve_fakes import SCRIPT_TITLE, FakeRetriever, save_run, tiny_dataset

from genrec.retrieval import Request
from genrec.serve.app import create_app
from genrec.serve.batching import BatchingConfig, MicroBatcher
from genrec.serve.model import RunLoadError, ServedModel, load_served_model, served_split

TOKEN = "s3cret-token"


def fake_loader(made: list[FakeRetriever] | None = None, **fake_options):
    """A loader that reads RUN/data for real and serves a FakeRetriever named 'fake' (and 'other')."""

    def build(name, run, dataset, split):
        retriever = FakeRetriever(dataset, name=name, **fake_options)
        if made is not None:
            made.append(retriever)
        return retriever

    return lambda run: load_served_model(run, ["fake", "other"], build=build)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    return save_run(tmp_path_factory.mktemp("run"), tiny_dataset())


@pytest.fixture()
def client(run_folder):
    app = create_app(run_folder, loader=fake_loader(), background_load=False, admin_token=TOKEN)
    with TestClient(app) as client:
        yield client


# --- answers ---------------------------------------------------------------------------------


def test_search_returns_catalog_items_with_display_fields(client):
    answer = client.get("/search", params={"q": "running shoe", "k": 2}).json()
    assert answer["retriever"] == "fake" and answer["query"] == "running shoe" and answer["k"] == 2
    assert [h["item_id"] for h in answer["hits"]] == [1, 2]  # item 1 is more popular: tie broken by it
    first = answer["hits"][0]
    assert first["title"] == "red running shoe"
    assert first["category"] == ["fashion", "shoes", "running"]
    assert first["price"] == 59.0 and first["origin"] == "human" and first["rank"] == 1
    assert answer["hits"][1]["origin"] == "ai"


def test_search_passes_the_users_history_oldest_first_and_strips_the_query(client, run_folder):
    made: list[FakeRetriever] = []
    app = create_app(run_folder, loader=fake_loader(made), background_load=False)
    with TestClient(app) as c:
        c.get("/search", params={"q": "  hat ", "user_id": 1})
    request = made[0].requests_seen[-1]
    assert request.query == "hat" and request.scenario == "search"
    assert request.history == (1, 6, 3) and request.history_actions == ("order", "click", "cart")
    assert all(t < request.ts for t in request.history_ts)


def test_recommend_for_a_known_user_excludes_nothing_the_api_adds(client):
    answer = client.get("/recommend", params={"user_id": 1, "k": 3}).json()
    assert answer["query"] is None and answer["user_id"] == 1
    ids = [h["item_id"] for h in answer["hits"]]
    assert len(ids) == 3 and not {1, 6, 3} & set(ids)  # the fake drops history: history did reach it


def test_an_unknown_user_is_a_cold_start_user_not_an_error(client):
    assert client.get("/recommend", params={"user_id": 999}).status_code == 200
    profile = client.get("/users/999").json()
    assert profile == {"user_id": 999, "known": False, "profile": {}, "n_interactions": 0, "recent": []}


def test_user_profile_shows_recent_history_newest_first(client):
    profile = client.get("/users/1").json()
    assert profile["known"] and profile["profile"] == {"city": "Oslo"} and profile["n_interactions"] == 3
    assert [(h["item_id"], h["action"]) for h in profile["recent"]] == [(3, "cart"), (6, "click"), (1, "order")]
    assert client.get("/users/1", params={"recent": 1}).json()["recent"][0]["item_id"] == 3


def test_users_lists_the_most_active_first(client):
    assert client.get("/users").json()["user_ids"] == [1, 2, 3]


def test_item_lookup_and_unknown_item_is_404(client):
    item = client.get("/items/4").json()
    assert item["title"] == SCRIPT_TITLE and item["category"] == ["electronics", "<b>phones</b>"]
    assert client.get("/items/5").json()["price"] is None
    missing = client.get("/items/12345")
    assert missing.status_code == 404 and "12345" in missing.json()["detail"]


def test_batch_retrieve_answers_each_request_in_order(client):
    body = {"retriever": "other", "requests": [{"query": "hat", "k": 1}, {"user_id": 2, "k": 2}, {"query": "wallet"}]}
    answers = client.post("/retrieve", json=body).json()["answers"]
    assert [a["retriever"] for a in answers] == ["other"] * 3
    assert answers[0]["hits"][0]["item_id"] == 3 and answers[0]["k"] == 1
    assert answers[1]["query"] is None and len(answers[1]["hits"]) == 2
    assert answers[2]["hits"][0]["item_id"] == 5


# --- errors: JSON, meaningful codes, never a 500 -----------------------------------------------


@pytest.mark.parametrize("params", [
    {"q": ""}, {"q": "   "}, {"q": "x" * 513}, {},
    {"q": "shoe", "k": 0}, {"q": "shoe", "k": 1001}, {"q": "shoe", "k": "ten"},
    {"q": "shoe", "retriever": "nope"}, {"q": "shoe", "user_id": -1}, {"q": "shoe", "user_id": "bob"},
])
def test_bad_search_input_is_a_json_422(client, params):
    response = client.get("/search", params=params)
    assert response.status_code == 422, params
    assert response.headers["content-type"].startswith("application/json") and response.json()["detail"]


def test_the_longest_allowed_query_is_accepted(client):
    assert client.get("/search", params={"q": "shoe " + "x" * 507}).status_code == 200


@pytest.mark.parametrize("params", [{"k": 0}, {"k": 1001}, {"retriever": "nope"}])
def test_bad_recommend_input_is_a_json_422(client, params):
    assert client.get("/recommend", params=params).status_code == 422


@pytest.mark.parametrize("body", [
    {"requests": []}, {"requests": [{"query": ""}]}, {"requests": [{"query": "a", "k": 0}]},
    {"retriever": "nope", "requests": [{"query": "a"}]}, {"requests": [{"query": "y" * 513}]},
    {"requests": [{"query": "a"}] * 257}, {"requests": "no"},
])
def test_bad_batch_input_is_a_json_422(client, body):
    assert client.post("/retrieve", json=body).status_code == 422


def test_unknown_retriever_error_names_the_served_ones(client):
    detail = client.get("/search", params={"q": "shoe", "retriever": "nope"}).json()["detail"]
    assert "'fake'" in detail[0]["msg"] and "'other'" in detail[0]["msg"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.text(max_size=600), k=st.integers(-5, 1200))
def test_no_query_text_or_k_ever_gives_a_server_error(client, query, k):
    response = client.get("/search", params={"q": query, "k": k})
    assert response.status_code in (200, 422)
    if response.status_code == 200:
        assert len(response.json()["hits"]) <= k


def test_503_with_json_while_the_model_loads(run_folder):
    release = threading.Event()
    load = fake_loader()

    def slow_loader(run):
        release.wait(timeout=10)
        return load(run)

    app = create_app(run_folder, loader=slow_loader, background_load=True)
    with TestClient(app) as client:
        for path in ("/search?q=shoe", "/recommend", "/items/1", "/users/1", "/healthz"):
            response = client.get(path)
            assert response.status_code == 503, path
            assert response.headers["content-type"].startswith("application/json")
        assert client.get("/healthz").json()["status"] == "loading"
        release.set()
        assert _wait_until(lambda: client.get("/healthz").status_code == 200)
        assert client.get("/search", params={"q": "shoe"}).status_code == 200


def test_a_run_folder_that_fails_to_load_keeps_answering_503_and_tells_the_admin_why(tmp_path):
    app = create_app(tmp_path / "missing", loader=fake_loader(), background_load=False, admin_token=TOKEN)
    with TestClient(app) as client:
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "failed"
        assert "does not exist" not in health.text  # the public sees no paths or exception text
        assert "does not exist" in client.get("/admin/status", headers={"X-Admin-Token": TOKEN}).json()["detail"]
        assert client.get("/search", params={"q": "shoe"}).status_code == 503


def test_load_served_model_rejects_a_broken_run_folder(tmp_path):
    with pytest.raises(RunLoadError, match="does not exist"):
        load_served_model(tmp_path / "nope", ["fake"], build=FakeRetriever.from_run)
    (tmp_path / "data").mkdir()
    with pytest.raises(RunLoadError, match="no valid dataset"):
        load_served_model(tmp_path, ["fake"], build=FakeRetriever.from_run)


def test_served_split_trains_on_every_event_and_holds_nothing_out():
    dataset = tiny_dataset()
    split = served_split(dataset)
    assert len(split.train) == len(dataset.events) and split.valid.empty and split.test.empty
    assert split.interactions["user_id"].tolist() == [1, 1, 1, 2, 2, 3]


# --- micro-batching --------------------------------------------------------------------------


def test_micro_batcher_gathers_concurrent_requests_into_one_call():
    fake = FakeRetriever(tiny_dataset())
    sizes: list[int] = []
    batcher = MicroBatcher("fake", fake, BatchingConfig(max_batch=64, max_wait_s=0.05), lambda n, s, t: sizes.append(s))

    async def main():
        return await asyncio.gather(*(batcher.submit(Request(user_id=u, query="shoe"), 2) for u in range(10)))

    answers = asyncio.run(main())
    assert fake.batch_sizes == [10] and sizes == [10]
    assert all(list(a.item_ids) == [1, 2] for a in answers)


def test_micro_batcher_respects_the_batch_bound_and_splits_by_k():
    fake = FakeRetriever(tiny_dataset())
    batcher = MicroBatcher("fake", fake, BatchingConfig(max_batch=4, max_wait_s=0.05))

    async def main():
        return await asyncio.gather(*(batcher.submit(Request(user_id=u, query="running"), 1 + u % 2) for u in range(10)))

    answers = asyncio.run(main())
    assert sum(fake.batch_sizes) == 10 and max(fake.batch_sizes) <= 4
    assert [len(a) for a in answers] == [1 + u % 2 for u in range(10)]


def test_a_lone_request_on_a_quiet_server_does_not_wait_for_companions():
    fake = FakeRetriever(tiny_dataset())
    batcher = MicroBatcher("fake", fake, BatchingConfig(max_batch=64, max_wait_s=30.0))

    async def main():
        return await asyncio.wait_for(batcher.submit(Request(user_id=1, query="hat"), 1), timeout=10)

    assert list(asyncio.run(main()).item_ids) == [3]


def test_under_load_a_request_waits_for_companions_up_to_the_bound():
    fake = FakeRetriever(tiny_dataset())
    batcher = MicroBatcher("fake", fake, BatchingConfig(max_batch=64, max_wait_s=2.0))

    async def main():
        await asyncio.gather(*(batcher.submit(Request(user_id=u, query="hat"), 1) for u in range(3)))  # busy now
        first = asyncio.ensure_future(batcher.submit(Request(user_id=7, query="hat"), 1))
        await asyncio.sleep(0.2)  # well inside the 2 s bound: the first request is still waiting
        second = batcher.submit(Request(user_id=8, query="hat"), 1)
        await asyncio.gather(first, second)

    asyncio.run(main())
    assert fake.batch_sizes == [3, 2]


def test_a_small_batch_runs_on_one_torch_thread_and_a_large_one_on_every_thread_of_the_process(monkeypatch):
    import torch

    from genrec.serve import batching

    class ThreadsSeen(FakeRetriever):
        def retrieve(self, requests, k):
            self.threads_seen.append((len(requests), torch.get_num_threads()))
            return super().retrieve(requests, k)

    fake = ThreadsSeen(tiny_dataset())
    fake.threads_seen = []
    batcher = MicroBatcher("fake", fake, BatchingConfig(max_batch=64, max_wait_s=0.05, parallel_from=4))
    before = torch.get_num_threads()
    monkeypatch.setattr(batching, "_process_threads", None)  # as in a fresh server process
    torch.set_num_threads(3)
    try:
        async def burst(n):
            await asyncio.gather(*(batcher.submit(Request(user_id=u, query="hat"), 1) for u in range(n)))

        for n in (1, 6, 2, 4):
            asyncio.run(burst(n))
    finally:
        torch.set_num_threads(before)
    assert fake.threads_seen == [(1, 1), (6, 3), (2, 1), (4, 3)]


def test_batching_config_rejects_a_parallel_threshold_below_one():
    with pytest.raises(ValueError, match="parallel_from"):
        BatchingConfig(parallel_from=0)


def test_micro_batcher_hands_a_retriever_failure_to_every_waiter():
    class Broken:
        name = "broken"

        def retrieve(self, requests, k):
            raise RuntimeError("boom")

    batcher = MicroBatcher("broken", Broken(), BatchingConfig(max_batch=8, max_wait_s=0.01))

    async def main():
        return await asyncio.gather(*(batcher.submit(Request(user_id=1), 1) for _ in range(3)), return_exceptions=True)

    assert all(isinstance(e, RuntimeError) for e in asyncio.run(main()))


def test_one_failing_request_does_not_fail_the_others_in_its_batch():
    class FailsOnBoom(FakeRetriever):
        def retrieve(self, requests, k):
            if any(r.query == "boom" for r in requests):
                self.batch_sizes.append(len(requests))
                raise RuntimeError("boom")
            return super().retrieve(requests, k)

    fake = FailsOnBoom(tiny_dataset())
    batcher = MicroBatcher("fake", fake, BatchingConfig(max_batch=64, max_wait_s=0.05))
    queries = ["shoe", "boom", "hat", "wallet"]

    async def main():
        return await asyncio.gather(*(batcher.submit(Request(user_id=1, query=q), 1) for q in queries),
                                    return_exceptions=True)

    answers = asyncio.run(main())
    assert isinstance(answers[1], RuntimeError)
    assert [list(answers[i].item_ids) for i in (0, 2, 3)] == [[1], [3], [5]]
    assert fake.batch_sizes[0] == 4  # tried together first


def test_a_crashing_retriever_answers_json_500_without_the_exception_text(run_folder, caplog):
    class Crashes(FakeRetriever):
        def retrieve(self, requests, k):
            if any(r.query == "boom" for r in requests):
                raise RuntimeError("secret /srv/path exploded")
            return super().retrieve(requests, k)

    loader = lambda run: load_served_model(run, ["fake"], build=lambda n, r, d, s: Crashes(d))  # noqa: E731
    app = create_app(run_folder, loader=loader, background_load=False)
    with TestClient(app, raise_server_exceptions=False) as client, caplog.at_level("ERROR"):
        response = client.get("/search", params={"q": "boom"})
        assert client.get("/search", params={"q": "shoe"}).status_code == 200
    assert response.status_code == 500 and "internal error" in response.json()["detail"]
    assert "exploded" not in response.text and "/srv" not in response.text
    assert "exploded" in caplog.text  # the details go to the log


@pytest.mark.parametrize("config, batched", [(BatchingConfig(max_batch=64, max_wait_s=0.02), True),
                                              (BatchingConfig(max_batch=1, max_wait_s=0.0), False)])
def test_concurrent_http_requests_share_retrieve_calls_only_when_batching_is_on(run_folder, config, batched):
    made: list[FakeRetriever] = []
    app = create_app(run_folder, loader=fake_loader(made, delay_s=0.02), batching=config, background_load=False)
    with TestClient(app) as client, ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda u: client.get("/search", params={"q": "shoe", "user_id": u}).status_code, range(32)))
        metrics = client.get("/metrics").text
    assert statuses == [200] * 32
    sizes = made[0].batch_sizes[1:]  # [0]: the canary batch verified at load time
    assert sum(sizes) == 32
    if batched:
        assert max(sizes) > 1 and len(sizes) < 32
    else:
        assert sizes == [1] * 32
    samples = {(s.name, s.labels.get("retriever")): s.value for f in text_string_to_metric_families(metrics) for s in f.samples}
    assert samples[("genrec_retrieve_batch_size_count", "fake")] == len(sizes)
    assert samples[("genrec_retrieve_batch_size_sum", "fake")] == 32


# --- reload ----------------------------------------------------------------------------------


def test_reload_needs_the_admin_token(run_folder, monkeypatch):
    monkeypatch.delenv("GENREC_ADMIN_TOKEN", raising=False)
    app = create_app(run_folder, loader=fake_loader(), background_load=False)
    with TestClient(app) as client:
        assert client.post("/admin/reload").status_code == 401  # no token configured: reload is off
        monkeypatch.setenv("GENREC_ADMIN_TOKEN", TOKEN)
        assert client.post("/admin/reload").status_code == 401
        assert client.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.post("/admin/reload", headers={"X-Admin-Token": "wrong"}).status_code == 401
        assert client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert client.post("/admin/reload", headers={"X-Admin-Token": TOKEN}).status_code == 200


def test_reload_swaps_to_the_new_run_and_in_flight_requests_finish_on_the_old(run_folder, tmp_path):
    new_run = save_run(tmp_path / "new", tiny_dataset(title_suffix=" v2"))
    gate = threading.Event()
    gate.set()  # open for the canary batch at load time
    gated = fake_loader(gate=gate)
    loaders = {run_folder: gated}
    app = create_app(run_folder, loader=lambda run: loaders.get(run, fake_loader())(run),
                     background_load=False, admin_token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(app) as client, ThreadPoolExecutor(1) as pool:
        gate.clear()
        old_version = client.get("/healthz").json()["model_version"]
        in_flight = pool.submit(client.get, "/search", params={"q": "wallet"})
        time.sleep(0.1)  # let it reach the (gated) old retriever
        swapped = client.post("/admin/reload", json={"run": str(new_run)}, headers=auth)
        assert swapped.status_code == 200
        assert swapped.json()["previous_version"] == old_version
        new_version = swapped.json()["model_version"]
        assert new_version != old_version
        fresh = client.get("/search", params={"q": "wallet"}).json()
        assert fresh["model_version"] == new_version and fresh["hits"][0]["title"] == "leather wallet v2"
        gate.set()
        old_answer = in_flight.result(timeout=10)
        assert old_answer.status_code == 200
        assert old_answer.json()["model_version"] == old_version
        assert old_answer.json()["hits"][0]["title"] == "leather wallet"
        assert client.get("/admin/status", headers=auth).json()["run"] == str(new_run)


def test_a_broken_run_folder_is_rejected_and_the_old_model_keeps_serving(client, tmp_path):
    auth = {"X-Admin-Token": TOKEN}
    before = client.get("/healthz").json()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "items.parquet").write_bytes(b"not parquet")
    for folder in (tmp_path, tmp_path / "absent"):
        rejected = client.post("/admin/reload", json={"run": str(folder)}, headers=auth)
        assert rejected.status_code == 422 and "still serving" in rejected.json()["detail"]
    assert client.get("/healthz").json() == before
    assert client.get("/search", params={"q": "shoe"}).json()["model_version"] == before["model_version"]
    assert 'genrec_model_reloads_total{outcome="rejected"} 2' in client.get("/metrics").text


# --- metrics, docs, page ---------------------------------------------------------------------


def test_metrics_count_requests_by_route_and_status_and_name_the_model(client):
    for _ in range(3):
        client.get("/search", params={"q": "shoe"})
    client.get("/search", params={"q": ""})
    client.get("/items/1")
    client.get("/items/777")
    text = client.get("/metrics").text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("genrec_requests_total", (("method", "GET"), ("route", "/search"), ("status", "200")))] == 3
    assert samples[("genrec_requests_total", (("method", "GET"), ("route", "/search"), ("status", "422")))] == 1
    assert samples[("genrec_requests_total", (("method", "GET"), ("route", "/items/{item_id}"), ("status", "404")))] == 1
    assert samples[("genrec_request_duration_seconds_count", (("route", "/search"),))] == 4
    assert samples[("genrec_request_duration_seconds_bucket", (("le", "+Inf"), ("route", "/search")))] == 4
    version = client.get("/healthz").json()["model_version"]
    assert samples[("genrec_model_info", (("version", version),))] == 1 and samples[("genrec_model_loaded", ())] == 1


def _request_counts(client) -> dict[tuple[str, str], float]:
    """(route, status) → genrec_requests_total, read from /metrics by Prometheus's own parser."""
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    assert families["genrec_requests"].type == "counter"
    return {(s.labels["route"], s.labels["status"]): s.value
            for s in families["genrec_requests"].samples if s.name == "genrec_requests_total"}


def test_metrics_parse_as_prometheus_text_and_request_counts_go_up_after_requests(client):
    before = _request_counts(client)
    for _ in range(2):
        client.get("/search", params={"q": "shoe"})
    client.get("/recommend", params={"user_id": 1})
    after = _request_counts(client)
    assert after[("/search", "200")] == before.get(("/search", "200"), 0) + 2
    assert after[("/recommend", "200")] == before.get(("/recommend", "200"), 0) + 1
    assert after[("/metrics", "200")] == before.get(("/metrics", "200"), 0) + 1  # the scrape that read `before`
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    assert families["genrec_request_duration_seconds"].type == "histogram"
    assert {"genrec_model_loaded", "genrec_model_reloads", "process_resident_memory_bytes"} <= set(families)


def test_two_apps_in_one_process_count_their_own_requests(run_folder, client):
    other = create_app(run_folder, loader=fake_loader(), background_load=False)
    with TestClient(other) as second:
        for _ in range(3):
            second.get("/search", params={"q": "shoe"})
        assert _request_counts(second)[("/search", "200")] == 3
    assert ("/search", "200") not in _request_counts(client)


def test_openapi_documents_every_endpoint(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/search", "/recommend", "/retrieve", "/items/{item_id}", "/users/{user_id}", "/healthz",
                 "/metrics", "/admin/reload"):
        assert path in paths
    assert client.get("/docs").status_code == 404  # Swagger UI would load its script from a CDN


def test_page_and_its_assets_are_served_with_a_strict_content_security_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="q"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = client.get("/static/app.js").text
    assert "textContent" in script and "innerHTML" not in script.replace("never innerHTML", "")


def test_served_model_needs_at_least_one_retriever():
    with pytest.raises(RunLoadError, match="no retrievers"):
        ServedModel.build("run", tiny_dataset(), {})


def test_serve_command_refuses_unknown_retrievers_and_missing_data(tmp_path, run_folder, capsys):
    from genrec.cli import main

    assert main(["serve", str(run_folder), "--retrievers", "bm25,nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--retrievers", "bm25"]) == 2
    assert "no data/ folder" in capsys.readouterr().err
    assert main(["serve", str(run_folder), "--max-batch", "0"]) == 2


def _wait_until(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False
