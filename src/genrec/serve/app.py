"""The HTTP API and web page over the retrievers of one run folder.

    GET  /search?q=&user_id=&k=&retriever=    search (query + the user's history)
    GET  /recommend?user_id=&k=&retriever=    recommendation (history only)
    POST /retrieve                            a batch of either
    GET  /items/{item_id}                     one catalog item (404 if unknown)
    GET  /users/{user_id}                     profile + recent history (unknown → cold start)
    GET  /users?limit=                        most active users, for the page's picker
    GET  /healthz                             200 when serving, 503 while loading
    GET  /metrics                             Prometheus text
    POST /admin/reload                        load, verify and swap in a run folder (token)
    GET  /admin/status                        run folder and last load error (token)
    GET  /                                    the web page (static/)

The live model and its micro-batchers are one immutable `Serving` object:
a reload builds a new one beside the old, verifies it (`genrec.serve.verify`)
and swaps a single reference, so a request that already picked up the old one
finishes on it. Every call is bounded (`genrec.serve.limits`); public answers
carry no paths or exception text — those go to the log and `/admin/status`.
"""

# No `from __future__ import annotations`: the query bounds below come from `limits`, a local that
# FastAPI could not resolve from a string annotation.

import asyncio
import gc
import hmac
import logging
import math
import os
import re
import secrets
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Callable, Sequence

from fastapi import Body, FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import QueryParams

from genrec.retrieval import Ranked
from genrec.serve.batching import BatchingConfig, MicroBatcher
from genrec.serve.limits import RateLimiter, ServeLimits
from genrec.serve.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from genrec.serve.metrics import ServerMetrics
from genrec.serve.model import ServedModel, load_served_model
from genrec.serve.request_body import RequestBodyGuard
from genrec.serve.schemas import (
    MAX_USER_ID,
    AdminStatus,
    ErrorBody,
    Health,
    HistoryEntry,
    Item,
    ReloadAnswer,
    ReloadBody,
    RetrieveAnswer,
    RetrieveBatch,
    RetrieveBatchAnswer,
    UserList,
    UserProfile,
)
from genrec.serve.verify import verify_served_model

STATIC_DIR = Path(__file__).parent / "static"
ADMIN_TOKEN_ENV = "GENREC_ADMIN_TOKEN"
RECENT_HISTORY = 20
DEFAULT_K = 10
PAGE_SECURITY_HEADERS = {
    # Defence in depth: even if catalog text ever reached innerHTML, no inline script could run.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
}

Loader = Callable[[Path], ServedModel]
log = logging.getLogger("genrec.serve")

# Query parameters shared by the retrieve endpoints (module level: FastAPI resolves them by name).
RetrieverName = Annotated[str | None, Query(description="served retriever name; default: the first one served")]
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

    def __init__(self, run: Path, loader: Loader, batching: BatchingConfig, admin_token: str | None, limits: ServeLimits):
        self.run = run
        self.loader = loader
        self.batching = batching
        self.admin_token = admin_token
        self.limits = limits
        self.admin_rate = RateLimiter(limits.admin_calls_per_minute)
        self.metrics = ServerMetrics()
        self.live: Serving | None = None
        self.status = "loading"
        self.detail: str | None = None
        self.reload_lock = asyncio.Lock()

    def load_verified(self, folder: Path) -> ServedModel:
        """Load `folder` and verify it (`genrec.serve.verify`); raises with the reason. Runs on a worker thread."""
        model = self.loader(folder)
        verify_served_model(model)
        return model

    def install(self, model: ServedModel) -> Serving | None:
        """Make `model` the live one; returns the previous `Serving` (to retire)."""
        batchers = {
            name: MicroBatcher(name, retriever, self.batching, observer=self.metrics.observe_batch)
            for name, retriever in model.retrievers.items()
        }
        previous, self.live = self.live, Serving(model, batchers)
        self.status, self.detail = "ok", None
        self.metrics.set_model(model.version)
        freeze_loaded_objects()
        return previous

    def serving(self) -> Serving:
        live = self.live
        if live is None:
            message = "model is loading" if self.status == "loading" else "no model could be loaded (see /admin/status or the server log)"
            raise HTTPException(503, detail=message, headers={"Retry-After": "1"})
        return live

    def check_admin(self, request: Request, authorization: str | None, x_admin_token: str | None) -> None:
        """Rate-limit by client address (429), then require the admin token (401)."""
        wait_s = self.admin_rate.take(request.client.host if request.client else "unknown")
        if wait_s:
            raise HTTPException(429, detail="too many admin calls; retry later",
                                headers={"Retry-After": str(max(1, math.ceil(wait_s)))})
        expected = self.admin_token if self.admin_token is not None else os.environ.get(ADMIN_TOKEN_ENV)
        given = x_admin_token or (authorization[7:] if authorization and authorization.startswith("Bearer ") else None)
        if not expected or not given or not hmac.compare_digest(given.encode(), expected.encode()):
            raise HTTPException(401, detail=f"this endpoint needs the admin token (${ADMIN_TOKEN_ENV})",
                                headers={"WWW-Authenticate": "Bearer"})


def freeze_loaded_objects() -> None:
    """Leave the loaded model out of Python's cyclic garbage collections from now on (`gc.freeze`).

    A served run holds over half a million Python objects (the catalog, the
    histories, torch and the text model); one full collection walks them all
    in about 190 ms with the GIL held, stalling every request and the beam
    search alike. Frozen, they are skipped; what requests allocate is still
    collected. Unfrozen first, so a retired model's cycles can go.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def create_app(
    run: str | Path,
    retrievers: Sequence[str] = ("bm25",),
    *,
    loader: Loader | None = None,
    batching: BatchingConfig = BatchingConfig(),
    admin_token: str | None = None,
    background_load: bool = True,
    limits: ServeLimits = ServeLimits(),
    workers: int = 1,
) -> FastAPI:
    """Build the app for the run folder `run`.

    `loader(run_folder) -> ServedModel` defaults to `load_served_model` with
    the named `retrievers` (tests pass a fake); whatever it loads must pass
    `verify_served_model` before it serves. With `background_load` the
    server answers at once (503 until the model is in); otherwise startup waits
    for it. `admin_token` defaults to `$GENREC_ADMIN_TOKEN` read at each admin
    call; with neither, admin calls are refused (401). `limits` bounds each call.

    `workers` > 1 builds one of `genrec serve --workers N`'s processes
    (`genrec.serve.workers`): startup waits for the model and fails when the
    run folder cannot be served (so a restart keeps the old workers), and
    `POST /admin/reload` is refused (409), since it would reach one worker only.
    """
    if workers < 1:
        raise ValueError(f"workers must be ≥ 1, got {workers}")
    names = list(retrievers)
    state = ServerState(Path(run), loader or (lambda folder: load_served_model(folder, names)), batching, admin_token, limits)
    K = Annotated[int, Query(ge=1, le=limits.max_k, description="how many items to return")]
    default_k = min(DEFAULT_K, limits.max_k)

    async def initial_load() -> None:
        try:
            model = await run_in_threadpool(state.load_verified, state.run)
        except Exception as error:  # keep answering 503; a reload can fix it
            state.status, state.detail = "failed", f"{type(error).__name__}: {error}"
            log.error("could not load %s: %s", state.run, state.detail)
            return
        if state.live is None:  # a reload that finished first wins
            state.install(model)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        task = asyncio.create_task(initial_load())
        if not background_load or workers > 1:
            await task
        if workers > 1 and state.live is None:
            raise RuntimeError(f"worker could not load {state.run}: {state.detail}")
        yield
        if state.live is not None:
            state.live.close()
        task.cancel()

    app = FastAPI(
        title="genrec",
        summary="Generative e-commerce search and recommendation over any retriever.",
        version="0.1.0",
        lifespan=lifespan,
        responses={413: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}},
        docs_url=None,  # Swagger UI and ReDoc load their scripts from a CDN; /openapi.json is served here
        redoc_url=None,
    )
    app.state.genrec = state

    @app.exception_handler(Exception)
    async def server_error(request, error: Exception) -> JSONResponse:
        # A bug (e.g. a retriever that crashes) still answers JSON; the details go to the log, not the client.
        error_id = secrets.token_hex(4)
        log.error("internal error %s on %s %s", error_id, request.method, request.url.path, exc_info=error)
        return JSONResponse({"detail": f"internal error (id {error_id}; the server log has the details)"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes each bad input whole; an input JSON cannot carry would turn this 422 into a 500.
        return JSONResponse({"detail": [_printable_error(e) for e in error.errors()]}, status_code=422)

    canonical_int = re.compile(r"0|[1-9][0-9]{0,18}")

    def plain_int(value: str | None, default: int, low: int, high: int) -> int | None:
        """`value` as an int when it is the plain decimal form of one in [low, high] (None: ask FastAPI)."""
        if value is None:
            return default
        number = int(value) if canonical_int.fullmatch(value) else None
        return number if number is not None and low <= number <= high else None

    async def quick_retrieve(scope) -> JSONResponse | None:
        """Answer a valid `GET /search` or `/recommend` without FastAPI's per-request parameter solving.

        That solving is the largest cost on the event loop under load. Only the
        plain, valid case is answered here; anything else (a missing, repeated,
        malformed or out-of-range parameter, an unknown retriever, no model
        yet) returns None and goes through the routes below, which answer it
        as they always did — so what a client sees never depends on which path ran.
        """
        live = state.live
        params = QueryParams(scope["query_string"])
        allowed = SEARCH_PARAMS if scope["path"] == "/search" else RECOMMEND_PARAMS
        if live is None or len(params) != len(params.multi_items()) or not allowed.issuperset(params):
            return None
        user_id = plain_int(params.get("user_id"), -1, 0, MAX_USER_ID)
        k = plain_int(params.get("k"), default_k, 1, limits.max_k)
        retriever = params.get("retriever")
        if user_id is None or k is None or (retriever is not None and retriever not in live.batchers):
            return None
        query = None
        if scope["path"] == "/search":
            text = params.get("q")
            if text is None or not 1 <= len(text) <= limits.max_query_chars or not text.strip():
                return None
            query = text.strip()
        name = retriever if retriever is not None else next(iter(live.batchers))
        try:
            answer = await _within_time(limits, _answer(live, name, query, None if user_id < 0 else user_id, k))
        except HTTPException as error:  # out of compute time: the 503 the routes give
            return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)
        return JSONResponse(answer)

    app.add_middleware(QuickRetrieve, answer=quick_retrieve, routes=app.router.routes)
    app.add_middleware(RequestBodyGuard, max_bytes=limits.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=state.metrics)

    @app.get("/search", response_model=RetrieveAnswer, tags=["retrieve"])
    async def search(
        q: Annotated[str, Query(min_length=1, max_length=limits.max_query_chars, description="the query")],
        user_id: UserId = None, k: K = default_k, retriever: RetrieverName = None,
    ) -> JSONResponse:
        """Search: the query plus the user's recent history."""
        live = state.serving()
        name = _retriever_name(live, retriever, ("query", "retriever"))
        return JSONResponse(await _within_time(limits, _answer(live, name, _query(q, ("query", "q"), limits), user_id, k)))

    @app.get("/recommend", response_model=RetrieveAnswer, tags=["retrieve"])
    async def recommend(user_id: UserId = None, k: K = default_k, retriever: RetrieverName = None) -> JSONResponse:
        """Recommendation: no query, only the user's recent history."""
        live = state.serving()
        name = _retriever_name(live, retriever, ("query", "retriever"))
        return JSONResponse(await _within_time(limits, _answer(live, name, None, user_id, k)))

    @app.post("/retrieve", response_model=RetrieveBatchAnswer, tags=["retrieve"])
    async def retrieve(batch: RetrieveBatch) -> JSONResponse:
        """A batch of search/recommendation requests for one retriever (micro-batched together)."""
        ks = _batch_ks(batch, limits)
        live = state.serving()
        name = _retriever_name(live, batch.retriever, ("body", "retriever"))
        queries = [
            None if r.query is None else _query(r.query, ("body", "requests", i, "query"), limits)
            for i, r in enumerate(batch.requests)
        ]
        answers = await _within_time(limits, asyncio.gather(*(
            _answer(live, name, query, r.user_id, k) for query, r, k in zip(queries, batch.requests, ks)
        )))
        return JSONResponse({"answers": list(answers)})

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
        recent: Annotated[int, Query(ge=1, le=limits.max_history, description="how many recent interactions")] = min(RECENT_HISTORY, limits.max_history),
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
        """200 while a model is serving; 503 while the first one loads (or if it failed: /admin/status says why)."""
        live = state.live
        if live is None:
            return JSONResponse(Health(status=state.status).model_dump(), status_code=503, headers={"Retry-After": "1"})
        return Health(status="ok", model_version=live.model.version, retrievers=list(live.batchers))

    @app.get("/metrics", response_class=PlainTextResponse, tags=["operations"])
    async def metrics() -> PlainTextResponse:
        """Prometheus text format: request counts, latency histogram, batch sizes, model version."""
        return PlainTextResponse(state.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    admin_errors: dict[int | str, dict] = {401: {"model": ErrorBody}, 429: {"model": ErrorBody}}

    @app.post("/admin/reload", response_model=ReloadAnswer, responses={**admin_errors, 409: {"model": ErrorBody}},
              tags=["operations"])
    async def reload(
        request: Request,
        body: Annotated[ReloadBody | None, Body()] = None,
        authorization: Annotated[str | None, Header()] = None,
        x_admin_token: Annotated[str | None, Header()] = None,
    ) -> ReloadAnswer:
        """Load a run folder beside the live one, verify it, and swap atomically.

        Needs the token from `$GENREC_ADMIN_TOKEN` (`Authorization: Bearer …`
        or `X-Admin-Token`). A run folder that fails to load or to verify
        (non-finite weights, another SID table, a canary batch answering
        nothing) is rejected (422, with the reason) and the live model keeps
        serving; requests in flight finish on the model they started with.
        """
        state.check_admin(request, authorization, x_admin_token)
        if workers > 1:
            raise HTTPException(409, detail=f"this server runs {workers} worker processes and a reload would reach "
                                            f"one of them; send SIGHUP to the main process to reload them all "
                                            f"(each new worker loads and verifies the run folder before an old one stops)")
        async with state.reload_lock:
            previous = state.live
            folder = Path(body.run) if body and body.run else (previous.model.run if previous else state.run)
            try:
                model = await run_in_threadpool(state.load_verified, folder)
            except Exception as error:  # a broken run folder must never take the live model down
                state.metrics.observe_reload(False)
                log.warning("reload of %s rejected: %s: %s", folder, type(error).__name__, error)
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

    @app.get("/admin/status", response_model=AdminStatus, responses=admin_errors, tags=["operations"])
    async def admin_status(
        request: Request,
        authorization: Annotated[str | None, Header()] = None,
        x_admin_token: Annotated[str | None, Header()] = None,
    ) -> AdminStatus:
        """What /healthz does not tell the public: the run folder and why the last load failed."""
        state.check_admin(request, authorization, x_admin_token)
        live = state.live
        if live is None:
            return AdminStatus(status=state.status, run=str(state.run), detail=state.detail)
        return AdminStatus(status="ok", model_version=live.model.version, run=str(live.model.run),
                           retrievers=list(live.batchers))

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_SECURITY_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


SEARCH_PARAMS = frozenset({"q", "user_id", "k", "retriever"})
RECOMMEND_PARAMS = frozenset({"user_id", "k", "retriever"})


class QuickRetrieve:
    """ASGI middleware: `GET /search` and `/recommend` answered by `answer(scope)` when it can.

    `answer` returns None for anything but a plain valid request, which then
    goes to the FastAPI routes as before. The route object still lands in
    `scope["route"]`, so `RequestMetrics` labels the request by its template.
    """

    def __init__(self, app, answer: Callable, routes: list):
        self.app = app
        self.answer = answer
        self.routes = routes
        self._by_path: dict[str, object] | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] in ("/search", "/recommend"):
            if self._by_path is None:  # the routes are all declared by the first request
                self._by_path = {getattr(r, "path", ""): r for r in self.routes}
            response = await self.answer(scope)
            if response is not None:
                scope["route"] = self._by_path.get(scope["path"])
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


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


async def _answer(live: Serving, name: str, query: str | None, user_id: int | None, k: int) -> dict:
    """One answer as the plain JSON of a `RetrieveAnswer`.

    Built as dicts, not as pydantic models that FastAPI would then validate and
    serialise again: the fields are the catalog's own, checked once at load
    (`ServedModel.build`), and under load this path runs a thousand times a
    second on the event loop, the thread the beam search shares the GIL with.
    `tests/test_serve_api.py` checks the answer against the `RetrieveAnswer` schema.
    """
    model = live.model
    ranked: Ranked = await live.batchers[name].submit(model.request(user_id, query), k)
    hits: list[dict] = []
    for item_id, score in zip(ranked.item_ids[:k].tolist(), ranked.scores[:k].tolist()):
        found = model.item(item_id)
        if found is not None:
            hits.append({**found, "rank": len(hits) + 1, "score": score if math.isfinite(score) else None})
    return {"retriever": name, "model_version": model.version, "user_id": user_id, "query": query, "k": k,
            "hits": hits}


def _retriever_name(live: Serving, name: str | None, loc: tuple) -> str:
    if name is None:
        return next(iter(live.batchers))
    if name not in live.batchers:
        raise HTTPException(422, detail=[{
            "loc": list(loc), "type": "value_error", "input": name,
            "msg": f"unknown retriever {name!r}; this server serves {list(live.batchers)}",
        }])
    return name


def _query(text: str, loc: tuple, limits: ServeLimits) -> str:
    """Strip a query; empty (or whitespace-only) and over-long queries are 422."""
    stripped = text.strip()
    if not stripped:
        raise HTTPException(422, detail=[{"loc": list(loc), "type": "value_error", "input": text[:40],
                                          "msg": "query must not be empty; use /recommend for no query"}])
    if len(text) > limits.max_query_chars:
        raise HTTPException(422, detail=[{"loc": list(loc), "type": "string_too_long", "input": text[:40] + "…",
                                          "msg": f"query must be at most {limits.max_query_chars} characters"}])
    return stripped


def _batch_ks(batch: RetrieveBatch, limits: ServeLimits) -> list[int]:
    """Each request's k, after the limits a `POST /retrieve` body has beyond its schema (422).

    A request without `k` gets the same default as a GET: 10, or `max_k` when that is smaller.
    """
    if len(batch.requests) > limits.max_requests_per_call:
        raise HTTPException(422, detail=[{"loc": ["body", "requests"], "type": "too_long",
                                          "msg": f"at most {limits.max_requests_per_call} requests per call, "
                                                 f"got {len(batch.requests)}"}])
    ks = [r.k if "k" in r.model_fields_set else min(DEFAULT_K, limits.max_k) for r in batch.requests]
    for i, k in enumerate(ks):
        if k > limits.max_k:
            raise HTTPException(422, detail=[{"loc": ["body", "requests", i, "k"], "type": "less_than_equal",
                                              "input": k, "msg": f"k must be at most {limits.max_k}"}])
    return ks


async def _within_time(limits: ServeLimits, work):
    """Await `work` for at most `max_call_s`; past it, a 503 (requests not yet started are dropped)."""
    try:
        return await asyncio.wait_for(work, timeout=limits.max_call_s)
    except asyncio.TimeoutError:
        raise HTTPException(503, detail=f"the call took longer than the server's {limits.max_call_s:g} s "
                                        f"compute limit; retry later or ask for fewer items",
                            headers={"Retry-After": "1"}) from None


def _printable_error(error: dict) -> dict:
    """A validation error with its input kept only when short and plain (JSON-safe, no lone surrogates)."""
    shown = {"loc": [_printable(part) for part in error.get("loc", ())], "msg": str(error.get("msg", "")),
             "type": str(error.get("type", ""))}
    value = error.get("input")
    if isinstance(value, bool) or value is None or (isinstance(value, int) and abs(value) < 2**63):
        shown["input"] = value
    elif isinstance(value, float) and math.isfinite(value):
        shown["input"] = value
    elif isinstance(value, str):
        shown["input"] = _printable(value[:100])
    return shown


def _printable(value):
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value if isinstance(value, int) else str(value)
