"""Request plumbing shared by the dashboard pages: who is signed in, HTML errors, page context."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import quote

import psycopg
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import RedirectResponse, Response

from minijenkin.api.auth import current_principal
from minijenkin.api.deps import db_connection
from minijenkin.api.errors import status_for
from minijenkin.auth import Principal
from minijenkin.errors import AuthenticationError, MiniJenkinError
from minijenkin.web import session as web_session
from minijenkin.web.templating import render

logger = logging.getLogger(__name__)

Conn = Annotated[psycopg.AsyncConnection, Depends(db_connection)]


class SignInRequired(Exception):
    """The page needs a signed-in user: anonymous reading is off, or the session's token stopped working."""

    def __init__(self, next_path: str, reason: str | None = None) -> None:
        super().__init__(reason or "sign in to see this page")
        self.next_path = next_path
        self.reason = reason


def signin_redirect(exc: SignInRequired) -> RedirectResponse:
    target = "/signin?next=" + quote(exc.next_path, safe="/")
    if exc.reason:
        target += "&expired=1"
    return RedirectResponse(target, status_code=303)


def _next_path(request: Request) -> str:
    path = request.url.path
    return f"{path}?{request.url.query}" if request.url.query else path


async def page_principal(request: Request, conn: Conn) -> Principal:
    """The signed-in principal, or anonymous when MINIJENKIN_ANONYMOUS_READ is on.

    Raises SignInRequired (a redirect to the sign-in page) otherwise.
    """
    try:
        principal = await current_principal(request, conn)
    except AuthenticationError as exc:
        raise SignInRequired(_next_path(request), reason="expired") from exc
    if principal.scope is None and not request.app.state.settings.anonymous_read:
        raise SignInRequired(_next_path(request))
    return principal


PagePrincipal = Annotated[Principal, Depends(page_principal)]


def page_context(request: Request, principal: Principal, *, section: str,
                 title: str) -> dict[str, Any]:
    """Variables every page template uses (navigation, who is signed in, CSRF token)."""
    session = web_session.read_session(request)
    return {
        "request_path": request.url.path,
        "section": section,
        "title": title,
        "principal": principal,
        "signed_in": principal.scope is not None and session is not None,
        "can_trigger": principal.allows("trigger"),
        "can_admin": principal.allows("admin"),
        "csrf_token": session.csrf_token if session is not None else "",
    }


def error_page(request: Request, status: int, message: str) -> Response:
    titles = {400: "Bad request", 401: "Sign-in required", 403: "Not allowed", 404: "Not found",
              409: "Conflict", 422: "Invalid request", 502: "Repository unreachable",
              503: "Database unavailable"}
    return render("error.html", {
        "request_path": request.url.path, "section": "", "title": titles.get(status, "Error"),
        "principal": None, "signed_in": False, "can_trigger": False, "can_admin": False,
        "csrf_token": "", "status": status, "message": message,
    }, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    messages = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ()) if part not in ("query", "path", "body")]
        messages.append(f"{'.'.join(location)}: {error.get('msg', 'invalid value')}")
    return "; ".join(messages) or "invalid request"


class PageRoute(APIRoute):
    """A route whose errors are HTML pages (or a sign-in redirect) instead of JSON bodies."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired as exc:
                return signin_redirect(exc)
            except RequestValidationError as exc:
                return error_page(request, 422, _validation_message(exc))
            except MiniJenkinError as exc:
                status = status_for(exc)
                if status == 500:
                    logger.exception("page failed", exc_info=exc, extra={
                        "action": "page_error", "path": request.url.path})
                    return error_page(request, 500, "internal error")
                return error_page(request, status, str(exc))

        return handle
