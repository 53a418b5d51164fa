"""Who may call the service.

Every call may present the bearer token. Reads (worklist, studies, result files) also accept the reader
session cookie, which the web page gets once by presenting the token to ``POST /api/session``: the token is
then not kept in the page, and images load with it. Writes never accept the cookie, so a page on another site
cannot make a signed-in browser queue studies.
"""
from __future__ import annotations

import hashlib
import hmac

from fastapi import Depends, HTTPException, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

SESSION_COOKIE = "radsight_session"
_bearer = HTTPBearer(auto_error=False)


class Access:
    def __init__(self, token: str):
        self._token = token.encode()
        self._session = hmac.new(self._token, b"radsight reader session", hashlib.sha256).hexdigest()

    def token_matches(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self._token)

    def bearer_matches(self, authorization: str | None) -> bool:
        """Whether an Authorization header carries the token as a bearer credential."""
        scheme, _, credentials = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(credentials.strip())

    def writer(self, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        if credentials is None or not self.token_matches(credentials.credentials):
            raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})

    def reader(self, request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        if credentials is not None and self.token_matches(credentials.credentials):
            return
        cookie = request.cookies.get(SESSION_COOKIE, "")
        if not hmac.compare_digest(cookie.encode(), self._session.encode()):
            raise HTTPException(401, "sign in: a bearer token or a reader session is required",
                                headers={"WWW-Authenticate": "Bearer"})

    def open_session(self, token: str, response: Response, secure: bool) -> None:
        """Set the reader session cookie (for this browser session only) if ``token`` is the API token."""
        if not self.token_matches(token):
            raise HTTPException(401, "wrong token")
        response.set_cookie(SESSION_COOKIE, self._session, httponly=True, samesite="strict", secure=secure, path="/")

    @staticmethod
    def close_session(response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/")
