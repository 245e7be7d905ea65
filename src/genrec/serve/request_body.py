"""Request bodies: bounded in size and held to strict JSON before any endpoint sees them.

Python's `json` accepts more than JSON: `NaN`, `Infinity`, numbers that
overflow to `inf`, and `\\ud800` escapes that decode to a lone surrogate,
which no UTF-8 answer can carry. Each used to reach a validation error that
then failed to echo its input (a 500, and the connection reset). Here a body
is read at most `max_bytes` far (413 past it, announced or streamed) and must
be strict JSON — UTF-8, no such constants, finite floats, integers within 64
bits, no lone surrogates — or it is a 422 in FastAPI's error shape.
"""

from __future__ import annotations

import json

from starlette.responses import JSONResponse

MAX_INT = 2**63 - 1


class RequestBodyGuard:
    """ASGI middleware: reads the whole body (bounded), checks it, hands it on unchanged."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        announced = dict(scope["headers"]).get(b"content-length", b"0")
        if not announced.isdigit() or int(announced) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            more = message.get("more_body", False)
        problem = strict_json_problem(body) if body.strip() else None
        if problem is not None:
            detail = [{"loc": ["body"], "type": "json_invalid", "msg": problem}]
            await JSONResponse({"detail": detail}, status_code=422)(scope, receive, send)
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, scope, receive, send) -> None:
        detail = f"request body larger than {self.max_bytes} bytes"
        await JSONResponse({"detail": detail}, status_code=413, headers={"Connection": "close"})(scope, receive, send)


def strict_json_problem(body: bytes) -> str | None:
    """Why `body` is not strict JSON, or None when it is."""
    try:
        text = body.decode("utf-8-sig")  # RFC 8259 lets a parser ignore a byte order mark, as FastAPI's does
    except UnicodeDecodeError as error:
        return f"body is not valid UTF-8 (byte {error.start})"
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except RecursionError:
        return "JSON nested too deeply"
    except ValueError as error:
        return f"body is not valid JSON: {error}"
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return "a string holds a lone surrogate (\\ud800-\\udfff without its pair)"
    return None


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON; numbers must be finite")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:20]} overflows a 64-bit float")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 19 or abs(int(text)) > MAX_INT:
        raise ValueError(f"integer {text[:20]}… is outside the 64-bit range")
    return int(text)
