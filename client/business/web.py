"""The inbox's web app: :func:`build_app` makes it from its parts (store, lines, changes).

:data:`ROUTES` below is everything a browser may ask. Every page is a Jinja2 template with
autoescaping on for every template, so what customers wrote (texts, names, file names,
captions) is shown as text; the one place that makes markup from a message is :func:`linkify`,
which escapes every part and links only ``http``/``https`` addresses. The gates of
:mod:`.security` run before any route: a route below can rely on a logged-in agent and, for a
POST, on a checked CSRF token. Live updates are server-sent events that say only that the
store changed (:mod:`.changes`); the page's script (``static/inbox.js``) then fetches the list
and the open thread again, as HTML the same templates render.
"""

from __future__ import annotations

import datetime
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
import trio
from markupsafe import Markup, escape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from e2e_proto.capabilities import PRIVATE, SOCIAL

from .agents import TOKEN_BYTES, Agents, LoginRefused
from .analytics import as_records, daily_figures
from .changes import Changes
from .config import InboxConfig
from .downloads import file_response, saved_file, shown_inline
from .lines import Line, ReplyFailed
from .security import (
    CSRF_FIELD,
    AgentGate,
    CsrfGate,
    SecurityHeaders,
    cookie_names,
    set_cookie,
    signed_in,
)
from .store import LIST_FILTERS, Conversation, InboxStore

HERE = Path(__file__).resolve().parent
TRANSPORT_LABELS = {PRIVATE: "Private", SOCIAL: "Social"}
MAX_ROW_ID = 2**63 - 1
"""The largest SQLite integer: a larger id in a path or query names nothing (not an error)."""
_URL = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)


def linkify(text: str | None) -> Markup:
    """``text`` escaped, with each ``http(s)://`` address made a link (nothing else is)."""
    if not text:
        return Markup("")
    parts: list[Markup] = []
    position = 0
    for match in _URL.finditer(text):
        parts.append(escape(text[position:match.start()]))
        parts.append(Markup('<a href="{0}" rel="noopener noreferrer nofollow" target="_blank">'
                            '{0}</a>').format(match.group()))
        position = match.end()
    parts.append(escape(text[position:]))
    return Markup("").join(parts)


def _when(at: float) -> str:
    return datetime.datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M")


def _size(size: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} B"


def template_environment() -> jinja2.Environment:
    """The templates, escaping every value in every template, failing on a missing one."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
        undefined=jinja2.StrictUndefined)
    environment.filters.update(linkify=linkify, when=_when, size=_size)
    environment.globals.update(transport_label=TRANSPORT_LABELS, shown_inline=shown_inline,
                               csrf_field=CSRF_FIELD)
    return environment


class Inbox:
    """The routes' shared parts; each route is a method."""

    def __init__(self, store: InboxStore, lines: Mapping[str, Line[Any, Any]],
                 changes: Changes, config: InboxConfig, agents: Agents) -> None:
        self.store = store
        self.lines = lines
        self.changes = changes
        self.config = config
        self.agents = agents
        self.templates = template_environment()
        self.streams = 0

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        """A template rendered for the signed-in agent."""
        me = signed_in(request.scope)
        html = self.templates.get_template(name).render(agent=me.agent, csrf=me.session.csrf,
                                                        **context)
        return HTMLResponse(html, status)

    def _show(self, request: Request) -> str:
        show = request.query_params.get("show", "open")
        return show if show in LIST_FILTERS else "open"

    def _list(self, request: Request, open_id: int | None = None) -> dict[str, Any]:
        show = self._show(request)
        return {"show": show, "filters": LIST_FILTERS, "open_id": open_id,
                "conversations": self.store.conversations(
                    show, signed_in(request.scope).agent, self.config.list_conversations)}

    def _conversation(self, request: Request) -> Conversation | None:
        conversation = _row_id(request.path_params["conversation"])
        return None if conversation is None else self.store.conversation(conversation)

    def _thread(self, conversation: Conversation) -> dict[str, Any]:
        self.store.mark_read(conversation.id)
        return {"conversation": conversation, "agents": self.store.agents(),
                "line_down": self._line_down(conversation),
                "messages": self.store.messages(conversation.id, self.config.thread_messages)}

    def _line_down(self, conversation: Conversation) -> str | None:
        line = self.lines.get(conversation.transport)
        if line is None:
            return f"this inbox has no {TRANSPORT_LABELS[conversation.transport]} account"
        return None if line.live is not None else (line.last_error or "connecting")

    # -- pages --------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        """The conversation list."""
        return self.page(request, "inbox.html", thread=False, **self._list(request))

    async def conversation(self, request: Request) -> Response:
        """The list with one conversation open."""
        conversation = self._conversation(request)
        if conversation is None:
            return PlainTextResponse("no such conversation", 404)
        return self.page(request, "inbox.html", thread=True, **self._thread(conversation),
                         **self._list(request, conversation.id))

    async def list_fragment(self, request: Request) -> Response:
        """The list alone (for live updates)."""
        return self.page(request, "_list.html",
                         **self._list(request, _row_id(request.query_params.get("open"))))

    async def thread_fragment(self, request: Request) -> Response:
        """A conversation's messages alone (for live updates)."""
        conversation = self._conversation(request)
        if conversation is None:
            return PlainTextResponse("no such conversation", 404)
        return self.page(request, "_messages.html", **self._thread(conversation))

    async def analytics(self, request: Request) -> Response:
        """The allow-listed figures, as a page."""
        return self.page(request, "analytics.html",
                         figures=daily_figures(self.store.timeline()))

    async def analytics_json(self, request: Request) -> Response:
        """The allow-listed figures, as JSON."""
        return JSONResponse(as_records(daily_figures(self.store.timeline())))

    async def download(self, request: Request) -> Response:
        """A message's file (:mod:`.downloads`)."""
        message_id = _row_id(request.path_params["message"])
        message = None if message_id is None else self.store.message(message_id)
        path = None if message is None or message.file is None else saved_file(
            self.store.home, message.file)
        if message is None or message.file is None or path is None:
            return PlainTextResponse("no such file", 404)
        return file_response(path, message.file)

    # -- actions (behind the CSRF gate) -------------------------------------------------------

    async def reply(self, request: Request) -> Response:
        """Send the agent's reply through the conversation's transport."""
        conversation = self._conversation(request)
        if conversation is None:
            return PlainTextResponse("no such conversation", 404)
        text = str((await request.form()).get("text", "")).strip()
        error, status = None, 400
        if not text:
            error = "write a reply first"
        elif len(text) > self.config.max_reply_chars:
            error = f"a reply has at most {self.config.max_reply_chars} characters"
        elif conversation.transport not in self.lines:
            error = self._line_down(conversation)
        else:
            try:
                await self.lines[conversation.transport].reply(
                    conversation.peer, text, signed_in(request.scope).agent)
            except ReplyFailed as exc:
                error, status = f"not sent: {exc}", 502
        if error is not None:
            return self.page(request, "inbox.html", status=status, thread=True,
                             **self._thread(conversation), error=error, draft=text,
                             **self._list(request, conversation.id))
        return _back(conversation)

    async def assign(self, request: Request) -> Response:
        """Give the conversation to an agent (or to nobody)."""
        conversation = self._conversation(request)
        if conversation is None:
            return PlainTextResponse("no such conversation", 404)
        agent = str((await request.form()).get("agent", ""))
        if agent and agent not in self.store.agents():
            return PlainTextResponse("no such agent", 400)
        self.store.assign(conversation.id, agent or None)
        self.changes.changed()
        return _back(conversation)

    async def close(self, request: Request) -> Response:
        """Close the conversation."""
        return self._set_closed(request, True)

    async def reopen(self, request: Request) -> Response:
        """Reopen the conversation."""
        return self._set_closed(request, False)

    def _set_closed(self, request: Request, closed: bool) -> Response:
        conversation = self._conversation(request)
        if conversation is None:
            return PlainTextResponse("no such conversation", 404)
        self.store.set_closed(conversation.id, closed)
        self.changes.changed()
        return _back(conversation)

    # -- logging in and out -------------------------------------------------------------------

    async def login_form(self, request: Request, error: str | None = None,
                         status: int = 200) -> Response:
        """The login form, with a fresh token in its cookie and its field."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        html = self.templates.get_template("login.html").render(csrf=token, error=error)
        response = HTMLResponse(html, status)
        set_cookie(response, self.config, cookie_names(self.config)[1], token, max_age=3600)
        return response

    async def login(self, request: Request) -> Response:
        """Check the name and password; a session cookie and the inbox, or the form again."""
        form = await request.form()
        address = request.client.host if request.client else "?"
        try:
            login = await self.agents.log_in(str(form.get("name", "")),
                                             str(form.get("password", "")), address)
        except LoginRefused as exc:
            return await self.login_form(request, str(exc), 429 if exc.limited else 401)
        response = RedirectResponse("/", 303)
        session_cookie, login_cookie = cookie_names(self.config)
        set_cookie(response, self.config, session_cookie, login.token,
                   max_age=self.config.session_max_seconds)
        response.delete_cookie(login_cookie, path="/", secure=self.config.secure_cookies,
                               httponly=True, samesite="strict")
        return response

    async def logout(self, request: Request) -> Response:
        """End the session; its cookie opens nothing any more."""
        self.agents.log_out(signed_in(request.scope).token)
        response = RedirectResponse("/login", 303)
        response.delete_cookie(cookie_names(self.config)[0], path="/",
                               secure=self.config.secure_cookies, httponly=True,
                               samesite="strict")
        return response

    # -- live updates -------------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        """Server-sent events: ``changed`` (with the store's version) whenever it changes, a
        comment every ``keepalive_seconds``; the stream ends when the session does. A stream
        holds its place among ``max_event_streams`` from this check until it ends."""
        if self.streams >= self.config.max_event_streams:
            return PlainTextResponse("too many live pages", 503)
        self.streams += 1
        return _CountedStream(self, self._stream(signed_in(request.scope).token),
                              media_type="text/event-stream")

    async def _stream(self, token: str) -> AsyncIterator[bytes]:
        seen = self.changes.version
        yield b"retry: 3000\n\n"
        while True:
            changed = False
            with trio.move_on_after(self.config.keepalive_seconds):
                seen = await self.changes.wait(seen)
                changed = True
            if self.agents.session(token) is None:
                return  # logged out (or expired): the page's next request is refused
            yield f"event: changed\ndata: {seen}\n\n".encode() if changed else \
                b": keepalive\n\n"


class _CountedStream(StreamingResponse):
    """A live-update stream that gives its place back (``inbox.streams``) when it ends, however
    it ends: even before its first byte (Starlette calls a route's response at once, with no
    checkpoint in between)."""

    def __init__(self, inbox: Inbox, content: AsyncIterator[bytes], media_type: str) -> None:
        super().__init__(content, media_type=media_type)
        self.inbox = inbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.inbox.streams -= 1


def _row_id(value: int | str | None) -> int | None:
    """``value`` as a row id (digits, at most :data:`MAX_ROW_ID`), or None."""
    if isinstance(value, str):
        value = int(value) if value.isascii() and value.isdigit() and len(value) < 20 else None
    return value if value is not None and 0 <= value <= MAX_ROW_ID else None


def _back(conversation: Conversation) -> Response:
    return RedirectResponse(f"/conversations/{conversation.id}", 303)


def routes(inbox: Inbox) -> list[BaseRoute]:
    """Everything a browser may ask (the gates of :mod:`.security` run first)."""
    return [
        Route("/login", inbox.login_form, methods=["GET"]),
        Route("/login", inbox.login, methods=["POST"]),
        Route("/logout", inbox.logout, methods=["POST"]),
        Route("/", inbox.home, methods=["GET"]),
        Route("/conversations/{conversation:int}", inbox.conversation, methods=["GET"]),
        Route("/conversations/{conversation:int}/reply", inbox.reply, methods=["POST"]),
        Route("/conversations/{conversation:int}/assign", inbox.assign, methods=["POST"]),
        Route("/conversations/{conversation:int}/close", inbox.close, methods=["POST"]),
        Route("/conversations/{conversation:int}/reopen", inbox.reopen, methods=["POST"]),
        Route("/fragments/list", inbox.list_fragment, methods=["GET"]),
        Route("/fragments/thread/{conversation:int}", inbox.thread_fragment, methods=["GET"]),
        Route("/files/{message:int}", inbox.download, methods=["GET"]),
        Route("/events", inbox.events, methods=["GET"]),
        Route("/analytics", inbox.analytics, methods=["GET"]),
        Route("/analytics.json", inbox.analytics_json, methods=["GET"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]


def build_app(store: InboxStore, lines: Mapping[str, Line[Any, Any]], changes: Changes,
              config: InboxConfig | None = None,
              clock: Callable[[], float] = time.time) -> Starlette:
    """The inbox's ASGI app over its parts (tests build it with real ones)."""
    config = config or InboxConfig()
    agents = Agents(store, config, clock)
    inbox = Inbox(store, lines, changes, config, agents)
    return Starlette(routes=routes(inbox), middleware=[
        Middleware(SecurityHeaders, policy=config.content_security_policy),
        Middleware(TrustedHostMiddleware, allowed_hosts=list(config.allowed_hosts),
                   www_redirect=False),
        Middleware(AgentGate, agents=agents, config=config),
        Middleware(CsrfGate, config=config),
    ])
