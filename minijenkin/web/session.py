"""Browser sessions of the dashboard, and their protection against cross-site request forgery.

Signing in stores the API token a person pasted in the `mj_session` cookie
(HttpOnly, SameSite=Strict, Secure when the request came over HTTPS), next to
a random nonce: the cookie value is `<nonce>.<token>`. Every request that
carries the cookie and no `Authorization` header is authenticated with that
token, so the dashboard has exactly the token's scope.

A state-changing request (POST, PUT, PATCH, DELETE) authenticated by the
cookie must also prove that it comes from a dashboard page:

- the `X-CSRF-Token` header (pages' scripts) or the `csrf_token` form field
  (plain HTML forms) must equal HMAC-SHA256(SHA-256(token), nonce), a value
  only pages of this site can read, and which changes with every sign-in;
- an `Origin` header, when the browser sends one, must be this site's.

SameSite=Strict already keeps other sites' requests from carrying the
cookie; the checks above also cover browsers that ignore SameSite.

The sign-in form itself is protected the same way before any session
exists: GET /signin sets a random `mj_signin` cookie whose value the form
sends back in a hidden field.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from minijenkin.errors import PermissionDeniedError

SESSION_COOKIE = "mj_session"
SIGNIN_COOKIE = "mj_signin"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SESSION_MAX_AGE_SECONDS = 30 * 86400
SIGNIN_MAX_AGE_SECONDS = 3600
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOKEN_MAX_CHARS = 512
_NONCE = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
_CSRF_CONTEXT = b"minijenkin-dashboard-csrf-v1:"


@dataclass(frozen=True)
class Session:
    """A signed-in browser: the API token from the session cookie and the nonce of its sign-in."""

    nonce: str
    token: str

    @property
    def csrf_token(self) -> str:
        key = hashlib.sha256(self.token.encode("utf-8")).digest()
        return hmac.new(key, _CSRF_CONTEXT + self.nonce.encode("ascii"), hashlib.sha256).hexdigest()


def new_session(token: str) -> Session:
    return Session(nonce=secrets.token_urlsafe(24), token=token)


def valid_token_text(token: str) -> bool:
    """Whether `token` can be stored in the cookie: printable ASCII without spaces or ';'."""
    return 0 < len(token) <= TOKEN_MAX_CHARS and all(
        33 <= ord(char) <= 126 and char not in ';,"\\' for char in token)


def read_session(request: Request) -> Session | None:
    """The session of the request's cookie; None without a cookie or with a malformed one."""
    value = request.cookies.get(SESSION_COOKIE)
    if not value:
        return None
    nonce, separator, token = value.partition(".")
    if not separator or not _NONCE.match(nonce) or not valid_token_text(token):
        return None
    return Session(nonce=nonce, token=token)


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session_cookie(response: Response, request: Request, session: Session) -> None:
    response.set_cookie(
        SESSION_COOKIE, f"{session.nonce}.{session.token}", max_age=SESSION_MAX_AGE_SECONDS,
        path="/", httponly=True, samesite="strict", secure=is_https(request))


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=is_https(request))


def signin_nonce(request: Request) -> str | None:
    value = request.cookies.get(SIGNIN_COOKIE)
    return value if value and _NONCE.match(value) else None


def set_signin_cookie(response: Response, request: Request, nonce: str) -> None:
    response.set_cookie(SIGNIN_COOKIE, nonce, max_age=SIGNIN_MAX_AGE_SECONDS, path="/signin",
                        httponly=True, samesite="strict", secure=is_https(request))


def clear_signin_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(SIGNIN_COOKIE, path="/signin", httponly=True, samesite="strict",
                           secure=is_https(request))


def check_origin(request: Request) -> None:
    """Raise PermissionDeniedError when the request's Origin header names another site."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin != own:
        raise PermissionDeniedError(
            f"cross-site request rejected: Origin {origin!r} is not this dashboard's {own!r}")


def check_forgery(request: Request, expected: str, submitted: str | None) -> None:
    """Raise PermissionDeniedError unless `submitted` equals `expected` and the origin is ours."""
    check_origin(request)
    if not submitted or not hmac.compare_digest(submitted.encode("utf-8", "replace"),
                                                expected.encode("utf-8")):
        raise PermissionDeniedError(
            f"missing or invalid CSRF token: a request signed in with the dashboard's cookie must "
            f"send the page's token in the {CSRF_HEADER} header or the {CSRF_FIELD} form field")


def cookie_token(request: Request) -> str | None:
    """The API token of the session cookie, for requests without an Authorization header.

    A state-changing request must carry the session's CSRF token in the
    `X-CSRF-Token` header; raises PermissionDeniedError otherwise. The
    dashboard's HTML forms send the token as a form field instead and are
    checked by their own handlers, which do not call this.
    """
    session = read_session(request)
    if session is None:
        return None
    if request.method in UNSAFE_METHODS:
        check_forgery(request, session.csrf_token, request.headers.get(CSRF_HEADER))
    return session.token
