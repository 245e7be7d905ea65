"""Typed request and response bodies; FastAPI turns them into the OpenAPI page (/docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

MAX_QUERY_CHARS = 512
MAX_K = 1000
MAX_BATCH_REQUESTS = 256
MAX_USER_ID = 2**63 - 1


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
    """One request in a `POST /retrieve` batch; `query` null → recommendation."""

    query: str | None = Field(default=None, max_length=MAX_QUERY_CHARS)
    user_id: int | None = Field(default=None, ge=0, le=MAX_USER_ID)
    k: int = Field(default=10, ge=1, le=MAX_K)


class RetrieveBatch(BaseModel):
    retriever: str | None = Field(default=None, description="served retriever name; default: the first one served")
    requests: list[RetrieveQuery] = Field(min_length=1, max_length=MAX_BATCH_REQUESTS)


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
    status: str = Field(description="'ok', 'loading' or 'failed'")
    model_version: str | None = None
    run: str | None = None
    retrievers: list[str] = []
    detail: str | None = None


class ReloadBody(BaseModel):
    run: str | None = Field(default=None, description="run folder to load; default: the one being served")


class ReloadAnswer(BaseModel):
    model_version: str
    previous_version: str | None
    run: str
    retrievers: list[str]


class ErrorBody(BaseModel):
    detail: Any
