"""Authentication of API requests: `Authorization: Bearer <token>`, or the dashboard's
session cookie (see minijenkin/web/session.py).

`MINIJENKIN_ADMIN_TOKEN`, when set, is accepted as an admin token without a
database row (for automation that bootstraps everything else). Anonymous
callers may read only when MINIJENKIN_ANONYMOUS_READ is true.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import psycopg
from fastapi import Depends, Request

from minijenkin.api.deps import db_connection
from minijenkin.auth import ANONYMOUS, Principal, Scope, find_token, tokens_equal
from minijenkin.errors import AuthenticationError, PermissionDeniedError
from minijenkin.web.session import cookie_token


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthenticationError("invalid Authorization header: use 'Bearer <token>'")
    return value.strip()


async def current_principal(
    request: Request, conn: Annotated[psycopg.AsyncConnection, Depends(db_connection)],
) -> Principal:
    """Who is calling; AuthenticationError for a token that is unknown, revoked or expired.

    Without an Authorization header, the dashboard's session cookie is read
    (PermissionDeniedError for a state-changing request without its CSRF token).
    """
    token = _bearer_token(request)
    if token is None:
        token = cookie_token(request)
    return await principal_for_token(request, conn, token)


async def principal_for_token(request: Request, conn: psycopg.AsyncConnection,
                              token: str | None) -> Principal:
    """The principal of a token value (ANONYMOUS for None); AuthenticationError when unusable."""
    if token is None:
        return ANONYMOUS
    admin_token = request.app.state.settings.admin_token
    if admin_token and tokens_equal(token, admin_token):
        return Principal(name="MINIJENKIN_ADMIN_TOKEN", scope="admin")
    principal = await find_token(conn, token)
    if principal is None:
        raise AuthenticationError("invalid API token: it is unknown, revoked or expired")
    return principal


async def current_principal_brief(
    request: Request,
    conn: Annotated[psycopg.AsyncConnection, Depends(db_connection, scope="function")],
) -> Principal:
    """Like `current_principal`, but the connection goes back to the pool before the
    response is sent, so a streaming response does not hold it."""
    return await current_principal(request, conn)


def require(scope: Scope, *, brief: bool = False) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets the request through only with at least `scope`.

    With `brief`, the connection used to check the token is released before
    the response starts (for streaming responses).
    """
    identify = current_principal_brief if brief else current_principal

    # A default rather than Annotated: string annotations (PEP 563) are
    # resolved in module globals, where the local `identify` does not exist.
    async def check(request: Request, principal: Principal = Depends(identify)) -> Principal:  # noqa: B008
        if principal.allows(scope):
            return principal
        if principal.scope is None:
            if scope == "read" and request.app.state.settings.anonymous_read:
                return principal
            raise AuthenticationError(
                f"authentication required: send 'Authorization: Bearer <token>' with a token "
                f"of scope {scope!r} or higher")
        raise PermissionDeniedError(
            f"token {principal.name!r} has scope {principal.scope!r}; this needs {scope!r}")

    return check


ReadAccess = Annotated[Principal, Depends(require("read"))]
TriggerAccess = Annotated[Principal, Depends(require("trigger"))]
AdminAccess = Annotated[Principal, Depends(require("admin"))]
# For routes that may stream: holds no pooled connection while the response is sent.
StreamReadAccess = Annotated[Principal, Depends(require("read", brief=True))]
