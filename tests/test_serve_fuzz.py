"""Property-based fuzzing of every endpoint from the server's own OpenAPI schema: never a 5xx.

Hypothesis draws an operation from `app.openapi()`, then parameters and a JSON
body from that operation's schema — sometimes valid, sometimes any JSON value,
sometimes raw bytes with the JSON edge cases Python's parser lets through
(NaN, lone surrogates, huge numbers) — and sends it in-process. Every answer
must be below 500 and JSON (or the page). The example count bounds the time
(a few seconds here; the test's timeout is 60 s).
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_fakes import FakeRetriever, save_run, tiny_dataset

from genrec.serve.app import create_app
from genrec.serve.limits import ServeLimits
from genrec.serve.model import load_served_model

TOKEN = "fuzz-token"
EXAMPLES = 400

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
EDGE_TOKENS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", '"\\ud800"', '"\\udfff x"', "1" + "0" * 30,
               "true", "null", '"' + "x" * 600 + '"', "[]", "{}", "-0", "1.5"]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    run = save_run(tmp_path_factory.mktemp("fuzz"), tiny_dataset())
    loader = lambda folder: load_served_model(folder, ["fake", "other"],  # noqa: E731
                                              build=lambda name, r, dataset, split: FakeRetriever(dataset, name=name))
    limits = ServeLimits(max_body_bytes=4096, admin_calls_per_minute=1000)
    app = create_app(run, loader=loader, background_load=False, admin_token=TOKEN, limits=limits)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def from_schema(schema: dict, components: dict, depth: int = 0) -> st.SearchStrategy:
    """Values matching a JSON schema (the subset FastAPI emits), bounds included."""
    if "$ref" in schema:
        return from_schema(components[schema["$ref"].rsplit("/", 1)[1]], components, depth)
    if "anyOf" in schema:
        return st.one_of([from_schema(s, components, depth) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        edges = [v for b in (low, high) if b is not None for v in (b - 1, b, b + 1)]
        return st.integers(min_value=low, max_value=high) | st.sampled_from(edges or [0])
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "string":
        longest = schema.get("maxLength", 64)
        return st.text(max_size=min(longest + 2, 700)) | st.text(alphabet="abc shoe hat", min_size=1, max_size=20)
    if kind == "array" and depth < 3:
        return st.lists(from_schema(schema.get("items", {}), components, depth + 1), max_size=6)
    if kind == "object" and depth < 3:
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: from_schema(v, components, depth + 1) for k, v in properties.items() if k in required},
            optional={k: from_schema(v, components, depth + 1) for k, v in properties.items() if k not in required},
        )
    return JSON_VALUES


def operations(app_schema: dict) -> list[tuple[str, str, dict]]:
    return [(path, method.upper(), op) for path, item in app_schema["paths"].items() for method, op in item.items()]


@st.composite
def calls(draw, app_schema: dict):
    """(method, url, headers, body bytes or None) for one operation of the schema."""
    components = app_schema.get("components", {}).get("schemas", {})
    path, method, op = draw(st.sampled_from(operations(app_schema)))
    url, query, headers = path, {}, {}
    for param in op.get("parameters", []):
        where, name = param["in"], param["name"]
        if where != "path" and not param.get("required") and draw(st.booleans()):
            continue
        value = draw(from_schema(param.get("schema", {}), components) | st.text(max_size=30))
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if where == "path":
            url = url.replace("{" + name + "}", quote(text, safe="") or "0")
        elif where == "query":
            query[name] = text
        elif where == "header" and text.isascii() and text.isprintable():
            headers[name.replace("_", "-")] = text
    if path.startswith("/admin") and draw(st.booleans()):
        headers["x-admin-token"] = TOKEN
    body = None
    if "requestBody" in op:
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        kind = draw(st.sampled_from(["schema", "any", "edge", "bytes", "none"]))
        if kind == "schema":
            body = _dumps(draw(from_schema(schema, components)))
        elif kind == "any":
            body = _dumps(draw(JSON_VALUES))
        elif kind == "edge":
            text = _dumps(draw(from_schema(schema, components))).decode()
            token = draw(st.sampled_from(EDGE_TOKENS))
            spots = [i for i, c in enumerate(text) if c in ":[,"]
            at = draw(st.sampled_from(spots)) + 1 if spots else 0
            body = (text[:at] + token + text[at:]).encode()
        elif kind == "bytes":
            body = draw(st.binary(max_size=64))
        headers["content-type"] = "application/json"
    query_string = "&".join(f"{quote(k)}={quote(v, safe='', errors='surrogatepass')}" for k, v in query.items())
    return method, url + ("?" + query_string if query_string else ""), headers, body


def _dumps(value) -> bytes:
    import json

    return json.dumps(value).encode()


def test_the_schema_covers_every_endpoint(client):
    paths = {path for path, _, _ in operations(client.app.openapi())}
    assert {"/search", "/recommend", "/retrieve", "/items/{item_id}", "/users/{user_id}", "/users", "/healthz",
            "/metrics", "/admin/reload", "/admin/status"} <= paths


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(data=st.data())
@pytest.mark.timeout(60)
def test_no_call_drawn_from_the_openapi_schema_gets_a_5xx(client, data):
    method, url, headers, body = data.draw(calls(client.app.openapi()))
    answer = client.request(method, url, headers=headers, content=body)
    assert answer.status_code < 500, (method, url, body, answer.text[:300])
    if answer.status_code >= 400:
        assert answer.headers["content-type"].startswith("application/json") and "detail" in answer.json()
