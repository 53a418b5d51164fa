"""Who may call the service.

Every call may present the bearer token. Reads (worklist, studies, result files) also accept a reader session
cookie, which the web page gets by presenting the token to ``POST /api/session``: the token is then not kept in the
page, and images load with it. Each sign-in opens a session of its own (a random id; the store keeps its SHA-256
and expiry, shared by replicas), and ``DELETE /api/session`` revokes it. Writes never accept the cookie, so a page
on another site cannot make a signed-in browser queue studies. A client that presents a wrong token too often is
refused (429) for a while.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from fastapi import Depends, HTTPException, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

SESSION_COOKIE = "radsight_session"
SESSION_SECONDS = 12 * 3600  # a reading shift
MAX_FAILURES, FAILURE_WINDOW = 10, 60.0  # wrong tokens a client may present in a window of this many seconds
_bearer = HTTPBearer(auto_error=False)


def _digest(session: str) -> str:
    return hashlib.sha256(session.encode()).hexdigest()


class Access:
    """``store``: where sessions and failed attempts are kept (the service's job store)."""

    def __init__(self, token: str, store):
        self._token, self.store = token.encode(), store

    def token_matches(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self._token)

    def bearer_matches(self, authorization: str | None) -> bool:
        """Whether an Authorization header carries the token as a bearer credential."""
        scheme, _, credentials = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(credentials.strip())

    def check(self, client: str, presented: bool) -> None:
        """Raise 429 for a client with too many recent failures, else count a failed presentation as one (401)."""
        since = time.time() - FAILURE_WINDOW
        if self.store.failures(client, since) >= MAX_FAILURES:
            raise HTTPException(429, "too many wrong tokens; try again later",
                                headers={"Retry-After": str(int(FAILURE_WINDOW))})
        if not presented:
            self.store.failures(client, since, add=True)
            raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})

    def writer(self, request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        self.check(_client(request), credentials is not None and self.token_matches(credentials.credentials))

    def reader(self, request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        if credentials is not None:
            return self.check(_client(request), self.token_matches(credentials.credentials))
        cookie = request.cookies.get(SESSION_COOKIE, "")
        if not cookie or not self.store.session_open(_digest(cookie)):
            raise HTTPException(401, "sign in: a bearer token or a reader session is required",
                                headers={"WWW-Authenticate": "Bearer"})

    def open_session(self, token: str, request: Request, response: Response) -> None:
        """A new reader session (a cookie for this browser session) if ``token`` is the API token."""
        self.check(_client(request), self.token_matches(token))
        session = secrets.token_urlsafe(32)
        self.store.open_session(_digest(session), time.time() + SESSION_SECONDS)
        response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")

    def close_session(self, request: Request, response: Response) -> None:
        """Revoke this browser's session: its cookie reads nothing any more."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            self.store.close_session(_digest(cookie))
        response.delete_cookie(SESSION_COOKIE, path="/")


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"
