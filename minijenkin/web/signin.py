"""Signing in to the dashboard with an API token, and signing out (see web/session.py)."""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response

from minijenkin.api.auth import principal_for_token
from minijenkin.auth import ANONYMOUS
from minijenkin.errors import AuthenticationError, PermissionDeniedError
from minijenkin.web import session as web_session
from minijenkin.web.deps import Conn, PageRoute, page_context
from minijenkin.web.templating import render

logger = logging.getLogger(__name__)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

NEXT_MAX_CHARS = 2048


def safe_next(target: str | None) -> str:
    """Return `target` if it is a path on this site, else `/` (no open redirect)."""
    if (not target or len(target) > NEXT_MAX_CHARS or not target.startswith("/")
            or target.startswith("//") or "\\" in target
            or any(ord(char) < 32 for char in target)):
        return "/"
    return target


def _signin_form(request: Request, *, next_path: str, error: str | None = None,
                 notice: str | None = None, status_code: int = 200) -> Response:
    nonce = secrets.token_urlsafe(24)
    response = render("signin.html", {
        **page_context(request, ANONYMOUS, section="signin", title="Sign in"),
        "next_path": next_path, "signin_nonce": nonce, "error": error, "notice": notice,
        "current": web_session.read_session(request) is not None,
    }, status_code=status_code)
    web_session.set_signin_cookie(response, request, nonce)
    return response


@router.get("/signin")
async def signin_page(
    request: Request,
    next: Annotated[str | None, Query(max_length=NEXT_MAX_CHARS)] = None,  # noqa: A002
    expired: Annotated[bool, Query()] = False,
) -> Response:
    """Render the sign-in form, where a person pastes an API token."""
    notice = ("Your session's token is no longer valid (revoked or expired). Sign in again."
              if expired else None)
    return _signin_form(request, next_path=safe_next(next), notice=notice)


@router.post("/signin")
async def signin(request: Request, conn: Conn) -> Response:
    """Check the pasted token and keep it in the session cookie; then go to `next`."""
    form = await request.form()
    next_path = safe_next(str(form.get("next") or "/"))
    expected = web_session.signin_nonce(request)
    submitted = str(form.get(web_session.CSRF_FIELD) or "")
    web_session.check_origin(request)
    if expected is None or not hmac.compare_digest(submitted.encode("utf-8", "replace"),
                                                   expected.encode("utf-8")):
        raise PermissionDeniedError(
            "the sign-in form expired or came from another site; reload the sign-in page and "
            "try again")

    token = str(form.get("token") or "").strip()
    if not web_session.valid_token_text(token):
        return _signin_form(request, next_path=next_path, status_code=422,
                            error="token: paste an API token (printable characters, no spaces)")
    try:
        principal = await principal_for_token(request, conn, token)
    except AuthenticationError:
        logger.info("dashboard sign-in rejected", extra={"action": "dashboard_signin_rejected"})
        return _signin_form(request, next_path=next_path, status_code=401,
                            error="token: unknown, revoked or expired; create one with "
                                  "`minijenkin token create`")

    response = RedirectResponse(next_path, status_code=303)
    web_session.set_session_cookie(response, request, web_session.new_session(token))
    web_session.clear_signin_cookie(response, request)
    logger.info("dashboard sign-in", extra={
        "action": "dashboard_signin", "token_name": principal.name, "scope": principal.scope})
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    """End the browser session: the cookie is deleted (the token itself stays valid)."""
    form = await request.form()
    session = web_session.read_session(request)
    if session is not None:
        web_session.check_forgery(request, session.csrf_token,
                                  str(form.get(web_session.CSRF_FIELD) or ""))
    response = RedirectResponse("/signin", status_code=303)
    web_session.clear_session_cookie(response, request)
    return response
