"""The console's pages: sign-in, my notices, a session, the practice board.

Handlers parse and render only; what they show and do comes from the application layer
(`missed_session.application.console`, the session and notice use cases). A live region
long-polls its own URL with the fingerprint of what it shows and the change cursor it last
saw (`_long_poll`): the answer comes as soon as the trails or notices changed and the region
looks different, or after `LONG_POLL_SECONDS` (204: nothing to swap), so an idle open page
costs one cheap query a second and a render every `LONG_POLL_SECONDS`, not a render every
few seconds, and a form being filled in is not replaced.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from markupsafe import Markup

from missed_session.application import console as cases
from missed_session.application.results import Result, ResultKind
from missed_session.application.service import Application, UnavailableError
from missed_session.application.sessions import utc_now
from missed_session.console.charts import Series, bar_chart
from missed_session.console.web import (
    PACKAGE,
    PREFIX,
    SECURITY_HEADERS,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    Web,
    new_token,
)
from missed_session.domain.access import Viewer
from missed_session.domain.models import DecisionKind

STATIC = {"console.js": "console.js", "console.css": "console.css"}
LONG_POLL_SECONDS = 25.0
"""How long a live region's request is held when nothing changes (under common proxies'
60 s idle limit); at the end the region is rendered once, for what only the clock changes
("open for 12 min")."""
CURSOR_CHECK_SECONDS = 1.0
"""How often a held request asks PostgreSQL whether anything changed (one indexed query)."""
CURSOR_HEADER = "X-Live-Cursor"
"""Served files by public name (the console's own script: live regions, no framework)."""
DONE = {"ack": "Notice acknowledged.", "resolve": "Notice resolved.",
        **{kind.value: f"Recorded: {kind.value.replace('_', ' ')}." for kind in DecisionKind}}
"""Confirmation lines by the action just taken (fixed text, never echoed input)."""
STATUS = {ResultKind.BAD_INPUT: 422, ResultKind.REFUSED: 409, ResultKind.NOT_FOUND: 404,
          ResultKind.UNAVAILABLE: 503}


def console_router(application: Application, *, secure_cookies: bool = True,
                   clock: Callable[[], datetime] = utc_now) -> APIRouter:
    """The console's routes under /console, over `application`."""
    web = Web.create(application, secure_cookies=secure_cookies, clock=clock)

    class ConsoleRoute(APIRoute):
        """A route whose unreachable PostgreSQL or Temporal is a page, not a JSON error."""

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                try:
                    return await handler(request)
                except UnavailableError as error:
                    return web.unavailable(f"The console cannot reach a server it needs "
                                           f"({error}). Try again in a minute.")

            return handle

    router = APIRouter(prefix=PREFIX, include_in_schema=False, route_class=ConsoleRoute)
    _sign_in_routes(router, web)
    _notice_routes(router, web)
    _session_routes(router, web)
    _board_routes(router, web)
    _people_routes(router, web)

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in STATIC:
            return Response(status_code=404)
        return FileResponse(PACKAGE / "static" / STATIC[name],
                            headers={"Cache-Control": "public, max-age=3600"})

    return router


def _fingerprint(html: str) -> str:
    return hashlib.sha256(html.encode()).hexdigest()[:16]


def _region(web: Web, template: str, url: str,
            context: dict[str, object]) -> tuple[Markup, str]:
    """A live region's markup (polling `url` with its fingerprint) and the fingerprint."""
    inner = web.templates.get_template(template).render(prefix=PREFIX, **context)
    version = _fingerprint(inner)
    wrapper = web.templates.get_template("_live.html").render(
        inner=Markup(inner), url=url, version=version)  # noqa: S704 - rendered escaped
    return Markup(wrapper), version  # noqa: S704 - rendered escaped


def _live(web: Web, request: Request, template: str, url: str,
          context: dict[str, object]) -> Response:
    """A live region's refresh: 204 if unchanged since the fingerprint the browser holds."""
    region, version = _region(web, template, url, context)
    if request.query_params.get("v") == version:
        return Response(status_code=204)
    return HTMLResponse(str(region), headers=SECURITY_HEADERS)


async def _long_poll(web: Web, request: Request,
                     render: Callable[[], Awaitable[Response]]) -> Response:
    """Hold a live region's request until what it shows changed, or `LONG_POLL_SECONDS`.

    `render` is the region's refresh (`_live`: 200 with the region, or 204). It runs only
    when the change cursor moved past the one the browser sent (`c`), and once at the end;
    a cursor that moved without changing this region is taken as seen. Every answer
    carries the cursor (`X-Live-Cursor`) for the next request. A browser that went away
    ends the wait.
    """
    seen = request.query_params.get("c")
    ends = time.monotonic() + LONG_POLL_SECONDS
    while True:
        cursor = await cases.change_cursor(web.app)
        last = time.monotonic() >= ends
        if cursor != seen or last:
            response = await render()
            response.headers[CURSOR_HEADER] = cursor
            if response.status_code != 204 or last or seen is None:
                return response
            seen = cursor
        await asyncio.sleep(CURSOR_CHECK_SECONDS)
        if await request.is_disconnected():
            return Response(status_code=204)


# -- sign-in ----------------------------------------------------------------------------------


def _sign_in_routes(router: APIRouter, web: Web) -> None:
    @router.get("")
    async def home() -> Response:
        return RedirectResponse(f"{PREFIX}/notices", status_code=303)

    @router.get("/sign-in")
    async def sign_in_page() -> Response:
        return _sign_in_form(web, None, 200)

    @router.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        form = await request.form()
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        cookie = request.cookies.get(SIGN_IN_COOKIE, "")
        if not cookie or values.get("csrf_token") != cookie:
            return _sign_in_form(web, "The sign-in form had expired; please try again.", 403)
        now = web.clock()
        source = request.client.host if request.client is not None else "unknown"
        signed = await cases.sign_in(web.app, values.get("clinician_id", "").strip(),
                                     values.get("password", ""), now, source=source)
        if isinstance(signed, cases.Throttled):
            wait = max(1, int((signed.until - now).total_seconds() + 0.999))
            return _sign_in_form(web, signed.message(now), 429,
                                 headers={"Retry-After": str(wait)})
        if signed is None:
            return _sign_in_form(web, "Unknown clinician id or wrong password.", 401)
        response = RedirectResponse(f"{PREFIX}/notices", status_code=303)
        web.set_session_cookie(response, signed.token, signed.expires_at)
        response.delete_cookie(SIGN_IN_COOKIE, path=PREFIX)
        return response

    @router.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        who = await web.viewer(request)
        if who is not None and await web.form(request, who) is not None:
            await cases.sign_out(web.app, request.cookies.get(SESSION_COOKIE, ""))
        response = RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response


def _sign_in_form(web: Web, error: str | None, status: int, *,
                  headers: dict[str, str] | None = None) -> Response:
    token = new_token()
    response = web.page("sign_in.html", {"who": None, "error": error, "csrf": token,
                                         "title": "Sign in"}, status=status, headers=headers)
    web.set_sign_in_cookie(response, token)
    return response


# -- my notices -------------------------------------------------------------------------------


def _notice_routes(router: APIRouter, web: Web) -> None:
    @router.get("/notices")
    async def notices_page(request: Request) -> Response:
        who = await web.viewer(request)
        if who is None:
            return web.to_sign_in(request)
        return await _notices(web, who, done=DONE.get(request.query_params.get("done", "")))

    @router.get("/notices/live")
    async def notices_live(request: Request) -> Response:
        who = await web.viewer(request)
        if who is None:
            return web.to_sign_in(request)

        async def render() -> Response:
            return _live(web, request, "_notices.html", f"{PREFIX}/notices/live",
                         await _notices_context(web, who))

        return await _long_poll(web, request, render)

    @router.post("/notices/{action}")
    async def notice_action(request: Request, action: str) -> Response:  # noqa: PLR0911
        who = await web.viewer(request)
        if who is None:
            return web.to_sign_in(request)
        values = await web.form(request, who)
        if values is None:
            return web.csrf_refused(who)
        key = values.get("notice_key", "")
        back = values.get("back", "notices")
        if action == "ack":
            result = await cases.acknowledge(web.app, who, key)
        elif action == "resolve":
            result = await cases.resolve(web.app, who, key, values.get("outcome", ""),
                                         values.get("note", ""))
        else:
            return Response(status_code=404)
        on_session = back != "notices" and "/" not in back
        if result.kind is not ResultKind.APPLIED:
            failed = (key, action, f"{action} refused: {result.message}", values)
            if on_session:
                return await _session(web, who, back, notice_failed=failed, status=409)
            return await _notices(web, who, failed=failed, status=409)
        if on_session:
            return RedirectResponse(f"{PREFIX}/sessions/{quote(back, safe='')}?done={action}",
                                    status_code=303)
        return RedirectResponse(f"{PREFIX}/notices?done={action}", status_code=303)


Failed = tuple[str, str, str, dict[str, str]]
"""A refused notice form: the notice key, the action, the message, what was typed."""


async def _notices_context(web: Web, who: Viewer,
                           failed: Failed | None = None) -> dict[str, object]:
    now = web.clock()
    rows = await cases.my_notices(web.app, who)
    return {"who": who, "cards": await cases.notice_cards(web.app, rows, now), "now": now,
            "zone": await cases.practice_time_zone(web.app), "failed": failed}


async def _notices(web: Web, who: Viewer, *, done: str | None = None,
                   failed: Failed | None = None, status: int = 200) -> Response:
    live, _ = _region(web, "_notices.html", f"{PREFIX}/notices/live",
                      await _notices_context(web, who, failed))
    return web.page("notices.html", {"who": who, "live": live, "done": done,
                                     "title": "My notices"}, status=status)


# -- a session --------------------------------------------------------------------------------


def _session_routes(router: APIRouter, web: Web) -> None:
    @router.get("/sessions")
    async def find_session(request: Request) -> Response:
        session_id = quote(request.query_params.get("id", "").strip(), safe="")
        return RedirectResponse(f"{PREFIX}/sessions/{session_id}", status_code=303)

    @router.get("/find")
    async def find(request: Request) -> Response:
        who = await web.viewer(request)
        if who is None:
            return web.to_sign_in(request)
        text = request.query_params.get("q", "").strip()[:cases.MAX_SEARCH]
        if text and " " not in text and await cases.is_session(web.app, text):
            return RedirectResponse(f"{PREFIX}/sessions/{quote(text, safe='')}",
                                    status_code=303)  # the session page checks access
        found = await cases.find_clients(web.app, who, text)
        return web.page("find.html", {"who": who, "q": text, "found": found,
                                      "zone": await cases.practice_time_zone(web.app),
                                      "title": "Find a client"})

    @router.get("/sessions/{session_id}")
    async def session_page(request: Request, session_id: str) -> Response:
        who = await web.viewer(request)
        if who is None:
            return web.to_sign_in(request)
        return await _session(web, who, session_id,
                              done=DONE.get(request.query_params.get("done", "")))

    @router.get("/sessions/{session_id}/live")
    async def session_live(request: Request, session_id: str) -> Response:
        who = await web.viewer(request)
        if who is None:
            return web.to_sign_in(request)

        async def render() -> Response:
            now = web.clock()
            view = await cases.session_view(web.app, who, session_id, page=None, now=now)
            if isinstance(view, Result):
                return Response(status_code=STATUS.get(view.kind, 400))
            zone = await cases.practice_time_zone(web.app)
            response = _live(web, request, "_session_live.html",
                             f"{PREFIX}/sessions/{session_id}/live",
                             _session_context(who, view, zone, now))
            if response.status_code == 200:  # something new was shown: a view of client data
                await cases.record_view(web.app, who, "session/live", session_id)
            return response

        return await _long_poll(web, request, render)

    @router.post("/sessions/{session_id}/decide")
    async def decide(request: Request, session_id: str) -> Response:
        who = await web.viewer(request)
        if who is None:
            return web.to_sign_in(request)
        values = await web.form(request, who)
        if values is None:
            return web.csrf_refused(who)
        try:
            kind = DecisionKind(values.get("decision", ""))
        except ValueError:
            return await _session(web, who, session_id, error="choose a decision",
                                  status=422)
        result = await cases.decide(web.app, who, session_id, kind,
                                    reason=values.get("reason", ""),
                                    legal_basis=values.get("legal_basis", ""))
        if not result.ok:
            return await _session(web, who, session_id, error=result.message, failed=kind,
                                  values=values, status=STATUS.get(result.kind, 400))
        return RedirectResponse(f"{PREFIX}/sessions/{session_id}?done={kind.value}",
                                status_code=303)


def _session_context(who: Viewer, view: cases.SessionView, zone: ZoneInfo, now: datetime, *,
                     error: str | None = None, failed: DecisionKind | None = None,
                     values: dict[str, str] | None = None,
                     notice_failed: Failed | None = None) -> dict[str, object]:
    return {"who": who, "view": view, "zone": zone, "now": now, "error": error,
            "failed": failed, "values": values or {}, "notice_failed": notice_failed}


async def _session(web: Web, who: Viewer, session_id: str, *, done: str | None = None,
                   error: str | None = None, failed: DecisionKind | None = None,
                   values: dict[str, str] | None = None, notice_failed: Failed | None = None,
                   status: int = 200) -> Response:
    now = web.clock()
    view = await cases.session_view(web.app, who, session_id, now=now)
    if isinstance(view, Result):  # refused here: not theirs to see (403)
        status = 403 if view.kind is ResultKind.REFUSED else STATUS.get(view.kind, 400)
        return web.page("refused.html", {"who": who, "title": "Session",
                                         "message": view.message}, status=status)
    zone = await cases.practice_time_zone(web.app)
    live, _ = _region(web, "_session_live.html", f"{PREFIX}/sessions/{session_id}/live",
                      _session_context(who, view, zone, now, error=error, failed=failed,
                                       values=values, notice_failed=notice_failed))
    client = view.client.first_name if view.client else (
        view.booking.client.first_name if view.booking else None)
    ref = view.client.ref if view.client else (
        view.booking.client.ref if view.booking else None)
    title = f"{client} ({ref}): session" if client and ref else f"Session {session_id}"
    return web.page("session.html", {
        "who": who, "view": view, "live": live, "zone": zone, "done": done,
        "error": error if failed is None else None,
        "title": title,
    }, status=status)


# -- sessions today, a client, measures -------------------------------------------------------


def _people_routes(router: APIRouter, web: Web) -> None:
    @router.get("/today")
    async def today(request: Request) -> Response:
        who = await web.viewer(request)
        if who is None:
            return web.to_sign_in(request)
        lines = await cases.sessions_today(web.app, who, web.clock())
        title = "Sessions today" if who.sees_practice else "My sessions today"
        return web.page("today.html", {"who": who, "lines": lines, "title": title,
                                       "zone": await cases.practice_time_zone(web.app)})

    @router.get("/clients/{ref}")
    async def client_page(request: Request, ref: str) -> Response:
        who = await web.viewer(request)
        if who is None:
            return web.to_sign_in(request)
        now = web.clock()
        view = await cases.client_view(web.app, who, ref, now)
        if isinstance(view, Result):
            status = 403 if view.kind is ResultKind.REFUSED else STATUS.get(view.kind, 400)
            return web.page("refused.html", {"who": who, "title": "Client",
                                             "message": view.message}, status=status)
        chart = bar_chart(
            f"Sessions per week, last {len(view.weeks)} weeks: attended and missed",
            [monday.strftime("%d %b") for monday, _, _ in view.weeks],
            [Series("attended", [a for _, a, _ in view.weeks]),
             Series("missed", [m for _, _, m in view.weeks])], chart_id="attendance")
        name = view.first_name or "Client"
        return web.page("client.html", {
            "who": who, "view": view, "chart": chart, "now": now,
            "zone": await cases.practice_time_zone(web.app), "title": f"{name} ({ref})"})

    @router.get("/measures")
    async def measures_page(request: Request) -> Response:
        found = await _measures(web, request)
        if isinstance(found, Response):
            return found
        who, figures = found
        labels = [monday.strftime("%d %b") for monday in figures.weeks]
        charts = {
            "no_shows": bar_chart(
                "No-shows per week, by therapist", labels,
                [Series(t, v) for t, v in figures.no_shows.items()] or [
                    Series("no therapist", [0] * len(labels))], chart_id="no-shows"),
            "ladder": bar_chart(
                "Notices run out of steps, emergency contacts called, escalations blocked,"
                " per week", labels,
                [Series("notices run out", figures.exhausted),
                 Series("emergency contact called", figures.escalations),
                 Series("escalation blocked", figures.blocked)], chart_id="ladder"),
        }
        return web.page("measures.html", {"who": who, "m": figures, "charts": charts,
                                          "title": "Measures"})

    @router.get("/measures.csv")
    async def measures_csv(request: Request) -> Response:
        found = await _measures(web, request)
        if isinstance(found, Response):
            return found
        _, figures = found
        return Response(cases.measures_csv(figures), media_type="text/csv", headers={
            **SECURITY_HEADERS,
            "Content-Disposition": 'attachment; filename="measures.csv"'})


async def _measures(web: Web, request: Request) -> tuple[Viewer, cases.Measures] | Response:
    """The viewer and the practice's measures; the sign-in page or a refusal otherwise."""
    who = await web.viewer(request)
    if who is None:
        return web.to_sign_in(request)
    if not who.sees_board:
        return _board_refused(web, who, "Measures")
    return who, await cases.measures(web.app, who, web.clock())


def _board_refused(web: Web, who: Viewer, title: str) -> Response:
    return web.page("refused.html", {
        "who": who, "title": title,
        "message": f"{title} is for supervisors and the on-call clinician."}, status=403)


# -- the practice board -----------------------------------------------------------------------


def _board_routes(router: APIRouter, web: Web) -> None:
    @router.get("/board")
    async def board_page(request: Request) -> Response:
        who = await web.viewer(request)
        if who is None:
            return web.to_sign_in(request)
        if not who.sees_board:
            return web.page("refused.html", {
                "who": who, "title": "Practice board",
                "message": "The practice board is for supervisors and the on-call "
                           "clinician."}, status=403)
        board = await cases.board(web.app, who, web.clock())
        zone = await cases.practice_time_zone(web.app)
        live, _ = _region(web, "_board.html", f"{PREFIX}/board/live",
                          {"board": board, "zone": zone})
        return web.page("board.html", {"who": who, "live": live, "title": "Practice board"})

    @router.get("/board/live")
    async def board_live(request: Request) -> Response:
        who = await web.viewer(request)
        if who is None:
            return web.to_sign_in(request)
        if not who.sees_board:
            return Response(status_code=403)

        async def render() -> Response:
            board = await cases.board(web.app, who, web.clock(), record=False)
            zone = await cases.practice_time_zone(web.app)
            response = _live(web, request, "_board.html", f"{PREFIX}/board/live",
                             {"board": board, "zone": zone})
            if response.status_code == 200:  # something new was shown
                await cases.record_view(web.app, who, "board/live", None)
            return response

        return await _long_poll(web, request, render)
