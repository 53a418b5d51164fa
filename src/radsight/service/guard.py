"""Before any route reads a request body: a write without a valid bearer token is answered 401, and a body over
its route's limit 413, from the headers (Content-Length) or, for a body of unstated length, as it streams. Uploads
(``POST /api/studies``, STOW-RS) may be as large as the service's upload limit; every other body is JSON of a few
bytes and is held to :data:`JSON_LIMIT`.

FastAPI reads (and spools to disk) a multipart body before it runs a route's dependencies, so the token check of
the routes alone came after the whole upload: this ASGI middleware answers first.
"""
from __future__ import annotations

import json

from fastapi import HTTPException

from radsight.service.access import Access

JSON_LIMIT = 64 * 1024
WRITES = ("/api/studies", "/dicom-web/studies")  # the routes that take a bearer token and an upload


class BodyGuard:
    def __init__(self, app, access: Access, upload_limit: int):
        self.app, self.access, self.upload_limit = app, access, upload_limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        path = scope["path"].rstrip("/")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        upload = path == WRITES[0] or path == WRITES[1] or path.startswith(WRITES[1] + "/")
        limit = self.upload_limit if upload else JSON_LIMIT
        if upload:
            client = scope["client"][0] if scope.get("client") else "unknown"
            try:
                self.access.check(client, self.access.bearer_matches(headers.get("authorization")))
            except HTTPException as exc:
                return await _answer(send, exc.status_code, exc.detail, exc.headers)
        try:
            stated = int(headers.get("content-length", "0"))
        except ValueError:
            return await _answer(send, 400, "Content-Length is not a number")
        if stated > limit:
            return await _answer(send, 413, f"body larger than {limit} bytes")
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, f"body larger than {limit} bytes")
            return message
        return await self.app(scope, counted, send)


async def _answer(send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """A JSON error answered without reading the request's body; the connection is closed after it."""
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
           (b"connection", b"close")] + [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
