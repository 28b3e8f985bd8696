"""The inbox's gates, as small ASGI middlewares run before any route (outermost first):

* :class:`SecurityHeaders`: every response says no inline script and nothing from elsewhere
  (the Content-Security-Policy), no MIME sniffing, no framing, no referrer to other sites (so a
  form's ``Origin`` is this site's), no caching.
* Starlette's ``TrustedHostMiddleware`` (added by :func:`client.business.web.build_app`): a
  request naming another ``Host`` is refused (a DNS-rebinding page cannot reach the inbox).
* :class:`AgentGate`: every path but the login form and the static files needs the cookie of a
  live session; its agent is put in the scope (:func:`signed_in`).
* :class:`CsrfGate`: every request that changes something (any method but GET and HEAD) must be
  a URL-encoded form no larger than ``max_form_bytes`` whose ``csrf`` field is the session's
  token (the login form: the token of its own cookie), and from this origin when the browser
  names one; the body is then handed on to the route unchanged.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .agents import Agents
from .config import InboxConfig
from .store import AgentSession

CSRF_FIELD = "csrf"
PUBLIC_PATHS = ("/login",)
PUBLIC_PREFIXES = ("/static/",)
SAFE_METHODS = ("GET", "HEAD")
_SCOPE_KEY = "e2e.inbox.agent"


def cookie_names(config: InboxConfig) -> tuple[str, str]:
    """The session cookie's and the login form's cookie's names (``__Host-`` with TLS)."""
    prefix = "__Host-" if config.secure_cookies else ""
    return prefix + "inbox_session", prefix + "inbox_login"


def set_cookie(response: Response, config: InboxConfig, name: str, value: str,
               max_age: float | None = None) -> None:
    """Set a cookie as every inbox cookie is: HttpOnly, SameSite=Strict, Path=/, Secure with
    TLS."""
    response.set_cookie(name, value, max_age=None if max_age is None else int(max_age),
                        path="/", secure=config.secure_cookies, httponly=True,
                        samesite="strict")


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The live session of a request: its cookie's token and what the store holds of it."""

    token: str
    session: AgentSession

    @property
    def agent(self) -> str:
        """The agent's name."""
        return self.session.agent


def signed_in(scope: Scope) -> SignedIn:
    """The session :class:`AgentGate` found for this request (routes behind the gate only)."""
    found = scope.get(_SCOPE_KEY)
    assert isinstance(found, SignedIn), "a route behind the agent gate"
    return found


def is_public(path: str) -> bool:
    """Whether ``path`` is served without a session (the login form, the static files)."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class SecurityHeaders:
    """Adds the security headers to every HTTP response (see the module docstring)."""

    def __init__(self, app: ASGIApp, policy: str) -> None:
        self.app = app
        self.headers = {
            "content-security-policy": policy, "x-content-type-options": "nosniff",
            "x-frame-options": "DENY", "referrer-policy": "same-origin",
            "cross-origin-opener-policy": "same-origin",
            "cross-origin-resource-policy": "same-origin", "cache-control": "no-store"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; add the headers to its response start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)


class AgentGate:
    """Lets a request through only with a live session, or to a public path."""

    def __init__(self, app: ASGIApp, agents: Agents, config: InboxConfig) -> None:
        self.app = app
        self.agents = agents
        self.cookie = cookie_names(config)[0]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Find the session; refuse (401, or to the login form for a page) without one."""
        if scope["type"] != "http":  # the lifespan (there are no WebSocket routes)
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        token = connection.cookies.get(self.cookie)
        session = self.agents.session(token) if token else None
        if session is not None and token is not None:
            scope[_SCOPE_KEY] = SignedIn(token, session)
        elif not is_public(scope["path"]):
            if scope["method"] == "GET" and "text/html" in connection.headers.get("accept", ""):
                response: Response = RedirectResponse("/login", 303)
            else:
                response = PlainTextResponse("log in first", 401)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class CsrfGate:
    """Refuses a state-changing request without the right CSRF token (module docstring)."""

    def __init__(self, app: ASGIApp, config: InboxConfig) -> None:
        self.app = app
        self.max_bytes = config.max_form_bytes
        self.login_cookie = cookie_names(config)[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the form's token; hand the body on to the route."""
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = _foreign_origin(headers)
        if refusal is None and headers.get("content-type", "").split(";")[0].strip() != \
                "application/x-www-form-urlencoded":
            refusal = PlainTextResponse("a form is expected", 415)
        body = b""
        if refusal is None:
            body, too_large = await _read_body(receive, self.max_bytes)
            if too_large:
                refusal = PlainTextResponse("the form is too large", 413)
        expected = self._expected(scope)
        if refusal is None and (expected is None or not hmac.compare_digest(
                _field(body, CSRF_FIELD).encode(), expected.encode())):
            refusal = PlainTextResponse("the form's CSRF token is missing or wrong; "
                                        "reload the page", 403)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _expected(self, scope: Scope) -> str | None:
        """The token the form must carry; None when there is none (every form is refused)."""
        if scope["path"] in PUBLIC_PATHS:  # the login form: the token of its own cookie
            return HTTPConnection(scope).cookies.get(self.login_cookie) or None
        found = scope.get(_SCOPE_KEY)
        return found.session.csrf if isinstance(found, SignedIn) else None


def _foreign_origin(headers: Headers) -> Response | None:
    """A refusal when the browser says the form comes from another origin."""
    origin = headers.get("origin")
    if origin is None:
        return None
    parts = urlsplit(origin)
    if parts.netloc.lower() != headers.get("host", "").lower():
        return PlainTextResponse("a form from another site", 403)
    return None


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The request's body, and whether it was longer than ``limit`` (then cut short)."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return bytes(body), False
        body += message.get("body", b"")
        if len(body) > limit:
            return b"", True
        if not message.get("more_body", False):
            return bytes(body), False


def _field(body: bytes, name: str) -> str:
    """The one value of a form field (empty when missing, repeated or not UTF-8)."""
    try:
        values = parse_qs(body.decode(), keep_blank_values=True).get(name, [])
    except UnicodeDecodeError:
        return ""
    return values[0] if len(values) == 1 else ""
