"""The HTTP API and web page over the retrievers of one run folder.

    GET  /search?q=&user_id=&k=&retriever=    search (query + the user's history)
    GET  /recommend?user_id=&k=&retriever=    recommendation (history only)
    POST /retrieve                            a batch of either
    GET  /items/{item_id}                     one catalog item (404 if unknown)
    GET  /users/{user_id}                     profile + recent history (unknown → cold start)
    GET  /users?limit=                        most active users, for the page's picker
    GET  /healthz                             200 when serving, 503 while loading
    GET  /metrics                             Prometheus text
    POST /admin/reload                        load another run folder and swap (token)
    GET  /                                    the web page (static/)

The live model and its micro-batchers are one immutable `Serving` object:
a reload builds a new one beside the old and swaps a single reference, so a
request that already picked up the old one finishes on it.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Callable, Sequence

from fastapi import Body, FastAPI, Header, HTTPException, Path as PathParam, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles

from genrec.retrieval import Ranked
from genrec.serve.batching import BatchingConfig, MicroBatcher
from genrec.serve.metrics import ServerMetrics
from genrec.serve.model import ServedModel, load_served_model
from genrec.serve.schemas import (
    MAX_K, MAX_QUERY_CHARS, MAX_USER_ID, ErrorBody, Health, Hit, HistoryEntry, Item, ReloadAnswer, ReloadBody,
    RetrieveAnswer, RetrieveBatch, RetrieveBatchAnswer, UserList, UserProfile,
)

STATIC_DIR = Path(__file__).parent / "static"
ADMIN_TOKEN_ENV = "GENREC_ADMIN_TOKEN"
RECENT_HISTORY = 20
PAGE_SECURITY_HEADERS = {
    # Defence in depth: even if catalog text ever reached innerHTML, no inline script could run.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
}

Loader = Callable[[Path], ServedModel]

# Query parameters shared by the retrieve endpoints (module level: FastAPI resolves them by name).
RetrieverName = Annotated[str | None, Query(description="served retriever name; default: the first one served")]
K = Annotated[int, Query(ge=1, le=MAX_K, description="how many items to return")]
UserId = Annotated[int | None, Query(ge=0, le=MAX_USER_ID, description="unknown users are cold-start users")]


@dataclass(frozen=True)
class Serving:
    """A loaded model and one micro-batcher per retriever it serves."""

    model: ServedModel
    batchers: dict[str, MicroBatcher]

    def close(self) -> None:
        for batcher in self.batchers.values():
            batcher.close()


class ServerState:
    """What the app holds between requests: the live `Serving` and how loading went."""

    def __init__(self, run: Path, loader: Loader, batching: BatchingConfig, admin_token: str | None):
        self.run = run
        self.loader = loader
        self.batching = batching
        self.admin_token = admin_token
        self.metrics = ServerMetrics()
        self.live: Serving | None = None
        self.status = "loading"
        self.detail: str | None = None
        self.reload_lock = asyncio.Lock()

    def install(self, model: ServedModel) -> Serving | None:
        """Make `model` the live one; returns the previous `Serving` (to retire)."""
        batchers = {
            name: MicroBatcher(name, retriever, self.batching, observer=self.metrics.observe_batch)
            for name, retriever in model.retrievers.items()
        }
        previous, self.live = self.live, Serving(model, batchers)
        self.status, self.detail = "ok", None
        self.metrics.set_model(model.version, str(model.run))
        return previous

    def serving(self) -> Serving:
        live = self.live
        if live is None:
            message = "model is loading" if self.status == "loading" else f"no model could be loaded: {self.detail}"
            raise HTTPException(503, detail=message, headers={"Retry-After": "1"})
        return live


def create_app(
    run: str | Path,
    retrievers: Sequence[str] = ("bm25",),
    *,
    loader: Loader | None = None,
    batching: BatchingConfig = BatchingConfig(),
    admin_token: str | None = None,
    background_load: bool = True,
) -> FastAPI:
    """Build the app for the run folder `run`.

    `loader(run_folder) -> ServedModel` defaults to `load_served_model` with
    the named `retrievers` (tests pass a fake). With `background_load` the
    server answers at once (503 until the model is in); otherwise startup waits
    for it. `admin_token` defaults to `$GENREC_ADMIN_TOKEN` read at each reload;
    with neither, reload is refused (401).
    """
    names = list(retrievers)
    state = ServerState(Path(run), loader or (lambda folder: load_served_model(folder, names)), batching, admin_token)

    async def initial_load() -> None:
        try:
            model = await run_in_threadpool(state.loader, state.run)
        except Exception as error:  # keep answering (503 with the reason); a reload can fix it
            state.status, state.detail = "failed", f"{type(error).__name__}: {error}"
            return
        if state.live is None:  # a reload that finished first wins
            state.install(model)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        task = asyncio.create_task(initial_load())
        if not background_load:
            await task
        yield
        if state.live is not None:
            state.live.close()
        task.cancel()

    app = FastAPI(
        title="genrec",
        summary="Generative e-commerce search and recommendation over any retriever.",
        version="0.1.0",
        lifespan=lifespan,
        responses={422: {"model": ErrorBody}, 503: {"model": ErrorBody}},
    )
    app.state.genrec = state

    @app.exception_handler(Exception)
    async def server_error(request, error: Exception) -> JSONResponse:
        # A bug (e.g. a retriever that crashes) still answers JSON; bad input never gets here.
        return JSONResponse({"detail": f"internal error: {type(error).__name__}: {str(error)[:300]}"}, status_code=500)

    app.add_middleware(RequestMetrics, metrics=state.metrics)

    @app.get("/search", response_model=RetrieveAnswer, tags=["retrieve"])
    async def search(
        q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="the query")],
        user_id: UserId = None, k: K = 10, retriever: RetrieverName = None,
    ) -> RetrieveAnswer:
        """Search: the query plus the user's recent history."""
        live = state.serving()
        return await _answer(live, _retriever_name(live, retriever, ("query", "retriever")), _query(q, ("query", "q")), user_id, k)

    @app.get("/recommend", response_model=RetrieveAnswer, tags=["retrieve"])
    async def recommend(user_id: UserId = None, k: K = 10, retriever: RetrieverName = None) -> RetrieveAnswer:
        """Recommendation: no query, only the user's recent history."""
        live = state.serving()
        return await _answer(live, _retriever_name(live, retriever, ("query", "retriever")), None, user_id, k)

    @app.post("/retrieve", response_model=RetrieveBatchAnswer, tags=["retrieve"])
    async def retrieve(batch: RetrieveBatch) -> RetrieveBatchAnswer:
        """A batch of search/recommendation requests for one retriever (micro-batched together)."""
        live = state.serving()
        name = _retriever_name(live, batch.retriever, ("body", "retriever"))
        queries = [
            None if r.query is None else _query(r.query, ("body", "requests", i, "query"))
            for i, r in enumerate(batch.requests)
        ]
        answers = await asyncio.gather(*(
            _answer(live, name, query, r.user_id, r.k) for query, r in zip(queries, batch.requests)
        ))
        return RetrieveBatchAnswer(answers=list(answers))

    @app.get("/items/{item_id}", response_model=Item, responses={404: {"model": ErrorBody}}, tags=["catalog"])
    async def item(item_id: Annotated[int, PathParam(description="catalog item id")]) -> Item:
        found = state.serving().model.item(item_id)
        if found is None:
            raise HTTPException(404, detail=f"no item with item_id {item_id}")
        return Item(**found)

    @app.get("/users", response_model=UserList, tags=["users"])
    async def users(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> UserList:
        """The most active users, for the page's user picker."""
        return UserList(user_ids=state.serving().model.most_active_users(limit))

    @app.get("/users/{user_id}", response_model=UserProfile, tags=["users"])
    async def user(
        user_id: Annotated[int, PathParam(ge=0, le=MAX_USER_ID)],
        recent: Annotated[int, Query(ge=1, le=200, description="how many recent interactions")] = RECENT_HISTORY,
    ) -> UserProfile:
        """Profile and recent history; an unknown user is a cold-start user (empty history), not an error."""
        model = state.serving().model
        items, actions, times = model.history(user_id, limit=recent)
        begin, end = model.user_rows.get(user_id, (0, 0))
        history = [
            HistoryEntry(**model.item(i), action=str(a), ts=int(t))
            for i, a, t in zip(items[::-1].tolist(), actions[::-1], times[::-1].tolist())
            if model.item(i) is not None
        ]
        return UserProfile(
            user_id=user_id, known=model.is_known_user(user_id), profile=model.profiles.get(user_id, {}),
            n_interactions=end - begin, recent=history,
        )

    @app.get("/healthz", response_model=Health, responses={503: {"model": Health}}, tags=["operations"])
    async def healthz():
        """200 while a model is serving; 503 while the first one loads (or if it failed)."""
        live = state.live
        if live is None:
            body = Health(status=state.status, detail=state.detail)
            return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "1"})
        return Health(status="ok", model_version=live.model.version, run=str(live.model.run), retrievers=list(live.batchers))

    @app.get("/metrics", response_class=PlainTextResponse, tags=["operations"])
    async def metrics() -> PlainTextResponse:
        """Prometheus text format: request counts, latency histogram, batch sizes, model version."""
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post("/admin/reload", response_model=ReloadAnswer, responses={401: {"model": ErrorBody}}, tags=["operations"])
    async def reload(
        body: Annotated[ReloadBody | None, Body()] = None,
        authorization: Annotated[str | None, Header()] = None,
        x_admin_token: Annotated[str | None, Header()] = None,
    ) -> ReloadAnswer:
        """Load a run folder beside the live one and swap atomically.

        Needs the token from `$GENREC_ADMIN_TOKEN` (`Authorization: Bearer …`
        or `X-Admin-Token`). A run folder that fails to load is rejected (422)
        and the live model keeps serving; requests in flight finish on the
        model they started with.
        """
        expected = state.admin_token if state.admin_token is not None else os.environ.get(ADMIN_TOKEN_ENV)
        given = x_admin_token or (authorization[7:] if authorization and authorization.startswith("Bearer ") else None)
        if not expected or not given or not hmac.compare_digest(given.encode(), expected.encode()):
            raise HTTPException(401, detail=f"reload needs the admin token (${ADMIN_TOKEN_ENV})",
                                headers={"WWW-Authenticate": "Bearer"})
        async with state.reload_lock:
            previous = state.live
            folder = Path(body.run) if body and body.run else (previous.model.run if previous else state.run)
            try:
                model = await run_in_threadpool(state.loader, folder)
            except Exception as error:  # a broken run folder must never take the live model down
                state.metrics.observe_reload(False)
                raise HTTPException(422, detail=f"run folder rejected, still serving the previous model: "
                                                f"{type(error).__name__}: {error}") from error
            retired = state.install(model)
            state.metrics.observe_reload(True)
            if retired is not None:
                retired.close()
        return ReloadAnswer(
            model_version=model.version, previous_version=previous.model.version if previous else None,
            run=str(model.run), retrievers=list(model.retrievers),
        )

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_SECURITY_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


class RequestMetrics:
    """ASGI middleware counting every response by route template and status, with its latency.

    Plain ASGI rather than `@app.middleware("http")`: it adds no task or
    stream per request, which matters at thousands of requests a second.
    """

    def __init__(self, app, metrics: ServerMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_record(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe_request(scope["method"], route, status, time.perf_counter() - start)


async def _answer(live: Serving, name: str, query: str | None, user_id: int | None, k: int) -> RetrieveAnswer:
    model = live.model
    ranked: Ranked = await live.batchers[name].submit(model.request(user_id, query), k)
    hits = []
    for item_id, score in zip(ranked.item_ids[:k].tolist(), ranked.scores[:k].tolist()):
        found = model.item(item_id)
        if found is not None:
            hits.append(Hit(**found, rank=len(hits) + 1, score=score if math.isfinite(score) else None))
    return RetrieveAnswer(retriever=name, model_version=model.version, user_id=user_id, query=query, k=k, hits=hits)


def _retriever_name(live: Serving, name: str | None, loc: tuple) -> str:
    if name is None:
        return next(iter(live.batchers))
    if name not in live.batchers:
        raise HTTPException(422, detail=[{
            "loc": list(loc), "type": "value_error", "input": name,
            "msg": f"unknown retriever {name!r}; this server serves {list(live.batchers)}",
        }])
    return name


def _query(text: str, loc: tuple) -> str:
    """Strip a query; empty (or whitespace-only) and over-long queries are 422."""
    stripped = text.strip()
    if not stripped:
        raise HTTPException(422, detail=[{"loc": list(loc), "type": "value_error", "input": text,
                                          "msg": "query must not be empty; use /recommend for no query"}])
    if len(text) > MAX_QUERY_CHARS:
        raise HTTPException(422, detail=[{"loc": list(loc), "type": "string_too_long", "input": text[:40] + "…",
                                          "msg": f"query must be at most {MAX_QUERY_CHARS} characters"}])
    return stripped
