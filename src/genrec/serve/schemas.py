"""Typed request and response bodies; FastAPI turns them into the OpenAPI page (/docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_USER_ID = 2**63 - 1
STRICT = ConfigDict(strict=True)
"""Request bodies take JSON types as they are: `"k": true`, `"k": "5"` or `"k": 5.0` is a 422, not 1 or 5."""


class Item(BaseModel):
    item_id: int
    title: str
    category: list[str] = Field(description="category path from root to leaf")
    brand: str | None = None
    price: float | None = None
    origin: str = Field(description="'human' or 'ai' (AI-generated content)")
    attributes: dict[str, str] = {}


class Hit(Item):
    rank: int = Field(description="1-based position in the answer")
    score: float | None = Field(description="the retriever's score (null if not finite); comparable only within one retriever")


class RetrieveAnswer(BaseModel):
    retriever: str
    model_version: str
    user_id: int | None
    query: str | None = Field(description="null for recommendation")
    k: int
    hits: list[Hit]


class RetrieveQuery(BaseModel):
    """One request in a `POST /retrieve` batch; `query` null → recommendation.

    The server's limits (`genrec.serve.limits.ServeLimits`) bound `query` length and `k`.
    """

    model_config = STRICT
    query: str | None = Field(default=None, description="at most the server's max_query_chars (default 512)")
    user_id: int | None = Field(default=None, ge=0, le=MAX_USER_ID)
    k: int = Field(default=10, ge=1, description="at most the server's max_k (default 100)")


class RetrieveBatch(BaseModel):
    model_config = STRICT
    retriever: str | None = Field(default=None, description="served retriever name; default: the first one served")
    requests: list[RetrieveQuery] = Field(min_length=1, description="at most the server's max_requests_per_call (default 64)")


class RetrieveBatchAnswer(BaseModel):
    answers: list[RetrieveAnswer]


class HistoryEntry(Item):
    action: str = Field(description="strongest action in that visit: click, cart or order")
    ts: int


class UserProfile(BaseModel):
    user_id: int
    known: bool = Field(description="false for a user the log has never seen (a cold-start user)")
    profile: dict[str, Any]
    n_interactions: int
    recent: list[HistoryEntry] = Field(description="most recent interactions, newest first")


class UserList(BaseModel):
    user_ids: list[int] = Field(description="most active users first")


class Health(BaseModel):
    """What anyone may know: no paths, no exception text (those are in `AdminStatus` and the log)."""

    status: str = Field(description="'ok', 'loading' or 'failed'")
    model_version: str | None = None
    retrievers: list[str] = []


class AdminStatus(BaseModel):
    status: str = Field(description="'ok', 'loading' or 'failed'")
    model_version: str | None = None
    run: str | None = Field(description="the run folder being served (or that failed to load)")
    retrievers: list[str] = []
    detail: str | None = Field(default=None, description="why the last load or reload failed, if it did")


class ReloadBody(BaseModel):
    model_config = STRICT
    run: str | None = Field(default=None, description="run folder to load; default: the one being served")


class ReloadAnswer(BaseModel):
    model_version: str
    previous_version: str | None
    run: str
    retrievers: list[str]


class ErrorBody(BaseModel):
    detail: Any
