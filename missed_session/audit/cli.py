"""The `starter.py audit <action>` sub-forms for compliance review: verify, replay, purge.

`starter.py audit <session id>` (print the trail) stays in starter.py; these forms start
with an action word. As in starter.py, parsing and validation are pure and come first (bad
input: one line, exit 2), and the I/O half returns a `Verdict`: what to print and whether
everything checked out (exit 0) or not (exit 1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import sys
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import NoReturn

import asyncpg
from pydantic import TypeAdapter, ValidationError
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from missed_session.audit import export
from missed_session.audit import replay as replay_
from missed_session.audit.verify import (
    describe,
    finding_lines,
    log_problems,
    verify_all,
    verify_session,
)
from missed_session.domain import conformance, conformance_report
from missed_session.domain.models import AuditEvent, SessionId
from missed_session.store.audit import AuditStore
from missed_session.store.checkpoints import CheckpointSigner, HeadSink

ACTIONS = ("verify", "replay", "purge", "export", "conformance")
"""Words that, after `audit`, name an action rather than a session id."""
PURGE_BATCH = 10_000
"""Sessions one purge deletes at most; run it again for the rest."""
PAGE = 100
"""Sessions read per query by `replay --all`."""
IN_FLIGHT = 32
"""Sessions whose history and trail `replay --all` fetches at the same time."""
_SESSION_ID: TypeAdapter[str] = TypeAdapter(SessionId)


class AuditUsageError(ValueError):
    """Bad input for an audit action; the message names the argument."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise AuditUsageError(message)


@dataclass(frozen=True)
class VerifyRequest:
    """Recompute hash chains: one session, or every session (`session_id` None)."""

    session_id: str | None


@dataclass(frozen=True)
class ReplayRequest:
    """Replay and cross-check one session, or every session (`session_id` None)."""

    session_id: str | None


@dataclass(frozen=True)
class PurgeRequest:
    """Delete closed sessions recorded before `cutoff`, never inside the retention period."""

    cutoff: datetime
    """Midnight UTC at the start of `--before`."""
    retention_years: int
    """The configured retention period."""
    requested_by: str
    """Who asked, for the purge's own record."""


@dataclass(frozen=True)
class ExportRequest:
    """Print one session's trail as JSON lines or a FHIR R4 Bundle."""

    session_id: str
    format: str


@dataclass(frozen=True)
class ConformanceRequest:
    """Judge one session's trail against protocol packs (published standards)."""

    session_id: str
    packs: tuple[str, ...]
    """Pack names, in the order asked; every pack when none was named."""


@dataclass(frozen=True)
class RebuildRequest:
    """Rebuild the projections (attendance, open therapist tasks) from the audit trail."""


@dataclass(frozen=True)
class ConformanceReportRequest:
    """Judge every session that started in a period against protocol packs: a report."""

    start: datetime
    """First instant of the period (the `--from` day, 00:00 UTC)."""
    end: datetime
    """First instant after it (the day after `--to`, 00:00 UTC)."""
    packs: tuple[str, ...]
    """Pack names, in the order asked; every pack when none was named."""
    csv: bool = False
    """One CSV row per pack, rule and session instead of the counts."""


AuditActionRequest = (VerifyRequest | ReplayRequest | PurgeRequest | ExportRequest
                      | RebuildRequest | ConformanceRequest | ConformanceReportRequest)


@dataclass(frozen=True)
class Verdict:
    """What an audit action prints, and whether everything checked out."""

    text: str
    ok: bool


@dataclass(frozen=True)
class ReplaySetup:
    """What replay needs from the outer layers: the workflow code and its sandbox."""

    workflows: Sequence[type]
    runner: SandboxedWorkflowRunner | None


def is_action(argv: Sequence[str] | None) -> bool:
    """Whether the command line is `audit <action> ...` or `projections ...`."""
    if argv and argv[0] == "projections":
        return True
    return argv is not None and len(argv) >= 2 and argv[0] == "audit" and argv[1] in ACTIONS


def build_parser() -> argparse.ArgumentParser:
    """`audit verify|replay (SESSION_ID | --all)`."""
    parser = _Parser(prog="starter.py audit",
                     description="audit trail checks for compliance review")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify", help="recompute hash chains; name the first changed, missing or inserted row"
    )
    replay = actions.add_parser(
        "replay", help="replay the Temporal history with today's code and cross-check the trail"
    )
    purge = actions.add_parser(
        "purge", help="delete closed sessions recorded before DATE (never inside the retention "
        "period); the purge is recorded in audit_purges"
    )
    purge.add_argument("--before", required=True, type=date.fromisoformat, metavar="YYYY-MM-DD",
                       help="sessions whose every event is before this day (UTC)")
    purge.add_argument("--requested-by", default=getpass.getuser(),
                       help="who asks, for the record (default: the login name)")
    export = actions.add_parser("export", help="the trail as JSON lines or a FHIR R4 Bundle")
    export.add_argument("session_id", metavar="SESSION_ID")
    export.add_argument("--format", choices=["jsonl", "fhir"], default="jsonl")
    judged = actions.add_parser(
        "conformance", help="which rules of a published standard the session's trail shows met "
        "(one session, or every session that started in --from..--to)")
    judged.add_argument("session_id", nargs="?", metavar="SESSION_ID")
    judged.add_argument("--pack", action="append", choices=sorted(conformance.PACKS),
                        help="a standard to judge against (repeatable; default: every pack)")
    judged.add_argument("--from", dest="start", type=date.fromisoformat, metavar="YYYY-MM-DD",
                        help="report: sessions that started on or after this day (UTC)")
    judged.add_argument("--to", dest="end", type=date.fromisoformat, metavar="YYYY-MM-DD",
                        help="report: sessions that started on or before this day (UTC)")
    judged.add_argument("--csv", action="store_true",
                        help="report: one CSV row per pack, rule and session")
    for action in (verify, replay):
        target = action.add_mutually_exclusive_group(required=True)
        target.add_argument("session_id", nargs="?", metavar="SESSION_ID")
        target.add_argument("--all", action="store_true",
                            help="every session with a trail: closed, running or stopped")
    return parser


def parse(argv: Sequence[str], *, retention_years: int, now: datetime) -> AuditActionRequest:
    """`audit <action> ...` -> a validated request; raises AuditUsageError."""
    if argv[0] == "projections":
        parser = _Parser(prog="starter.py projections",
                         description="tables derived from the audit trail")
        parser.add_argument("action", choices=["rebuild"])
        parser.parse_args(list(argv[1:]))
        return RebuildRequest()
    args = build_parser().parse_args(list(argv[1:]))
    if args.action == "purge":
        return _purge_request(args, retention_years=retention_years, now=now)
    if args.action == "conformance":
        return _conformance_request(args)
    session_id: str | None = None
    if args.action == "export" or not args.all:
        session_id = _valid_stream_id(args.session_id)
    if args.action == "export":
        assert session_id is not None
        return ExportRequest(session_id, args.format)
    if args.action == "verify":
        return VerifyRequest(session_id)
    return ReplayRequest(session_id)


def _valid_stream_id(value: str | None) -> str:
    """`_stream_id`, its refusal as a usage error."""
    try:
        return _stream_id(value)
    except ValidationError as error:
        first = error.errors()[0]
        raise AuditUsageError(
            f"session_id: {first['msg'].removeprefix('Value error, ')}"
        ) from None


def _conformance_request(args: argparse.Namespace,
                         ) -> ConformanceRequest | ConformanceReportRequest:
    """One session's verdict, or (no session named) a report over a period."""
    if args.session_id is None:
        return _report_request(args)
    if args.start is not None or args.end is not None or args.csv:
        raise AuditUsageError("conformance: --from, --to and --csv make a report over a "
                              "period: name no SESSION_ID with them")
    return ConformanceRequest(_valid_stream_id(args.session_id),
                              tuple(args.pack or sorted(conformance.PACKS)))


def _report_request(args: argparse.Namespace) -> ConformanceReportRequest:
    """`audit conformance --from DAY --to DAY [--pack P] [--csv]`: the period, checked."""
    if args.start is None or args.end is None:
        raise AuditUsageError("conformance: name a SESSION_ID, or a period with --from and --to")
    if args.end < args.start:
        raise AuditUsageError("conformance: --to must not be before --from")
    start = datetime.combine(args.start, time(), tzinfo=UTC)
    end = datetime.combine(args.end + timedelta(days=1), time(), tzinfo=UTC)
    return ConformanceReportRequest(start, end, tuple(args.pack or sorted(conformance.PACKS)),
                                    csv=args.csv)


def _stream_id(value: str | None) -> str:
    """A session id, or a notice key (`<session id>/<name>`: the notice's own trail)."""
    if value is not None and replay_.is_notice(value):
        session_id, _, name = value.partition("/")
        _SESSION_ID.validate_python(session_id)
        _SESSION_ID.validate_python(name)
        return value
    return _SESSION_ID.validate_python(value)


def retention_limit(now: datetime, retention_years: int) -> datetime:
    """The latest cutoff a purge may use: `retention_years` before `now`."""
    try:
        return now.replace(year=now.year - retention_years)
    except ValueError:  # 29 February
        return now.replace(year=now.year - retention_years, day=28)


def _purge_request(args: argparse.Namespace, *, retention_years: int,
                   now: datetime) -> PurgeRequest:
    cutoff = datetime.combine(args.before, time(), tzinfo=UTC)
    limit = retention_limit(now, retention_years)
    if cutoff > limit:
        raise AuditUsageError(
            f"--before: {args.before.isoformat()} is inside the retention period of "
            f"{retention_years} years; the latest allowed is {limit.date().isoformat()}"
        )
    requested_by = str(args.requested_by).strip()
    if not requested_by:
        raise AuditUsageError("--requested-by: must not be empty")
    return PurgeRequest(cutoff, retention_years, requested_by[:100])


# -- the I/O half ----------------------------------------------------------------------------


async def run_verify(request: VerifyRequest, store: AuditStore,
                     signer: CheckpointSigner | None = None,
                     heads: HeadSink | None = None) -> Verdict:
    """One session's chain, or every session's with a summary; checkpoints with `signer`.

    `--all` also checks the checkpoint log as a whole against `heads` (kept outside
    PostgreSQL), and lists the integrity findings the service recorded.
    """
    if request.session_id is not None:
        report = await verify_session(store, request.session_id, signer)
        found = await finding_lines(store, request.session_id)
        if report.rows == 0 and report.ok and not found:
            return Verdict(f"no audit events for session {request.session_id}", ok=False)
        return Verdict("\n".join([describe(report), *found]), report.ok and not found)
    lines: list[str] = []
    checked = {False: 0, True: 0}  # by whether the trail is a notice's
    broken = {False: 0, True: 0}
    series = series_broken = 0
    async for report in verify_all(store, signer=signer):
        if replay_.is_series(report.session_id):  # a caring-contacts series' own trail
            series += 1
            series_broken += not report.ok
            if not report.ok:
                lines.append(describe(report))
            continue
        notice = replay_.is_notice(report.session_id)
        checked[notice] += 1
        if not report.ok:
            broken[notice] += 1
            lines.append(describe(report))
    log_lines = await log_problems(store, signer, heads)
    found = await finding_lines(store)
    lines += log_lines + found
    summary = (f"verified {checked[False]} sessions: {checked[False] - broken[False]} intact, "
               f"{broken[False]} broken")
    if checked[True]:
        summary += (f"; {checked[True]} notices: {checked[True] - broken[True]} intact, "
                    f"{broken[True]} broken")
    if series:
        summary += (f"; {series} caring-contact series: {series - series_broken} intact, "
                    f"{series_broken} broken")
    if log_lines:
        summary += "; the checkpoint log is BROKEN"
    if found:
        summary += f"; {len(found)} integrity findings"
    # Notices' and series' trails have no attendance row: only sessions can be "not closed".
    if open_sessions := await store.open_session_count() - checked[True] - series:
        # An intact chain can still be a session whose workflow stopped before closing.
        summary += (f"; {open_sessions} not closed (running, or stopped early: "
                    "`audit replay --all` tells which)")
    lines.append(summary)
    return Verdict("\n".join(lines), not any(broken.values()) and not series_broken
                   and not log_lines and not found)


async def run_export(request: ExportRequest, store: AuditStore) -> Verdict:
    """JSON lines (with the hashes) or a validated FHIR Bundle."""
    trail = await store.trail(request.session_id)
    if not trail:
        return Verdict(f"no audit events for session {request.session_id}", ok=False)
    keys = export.notice_keys(trail)  # each notice to clinicians keeps its own trail
    if request.format == "jsonl":
        rows = await store.chain_rows(request.session_id)
        for key in keys:
            rows += await store.chain_rows(key)
        return Verdict(export.jsonl(rows), ok=True)
    notices = {key: found for key in keys if (found := await store.trail(key))}
    bundle = export.fhir_bundle(request.session_id, trail, notices)
    return Verdict(json.dumps(bundle, indent=2), ok=True)


async def run_conformance(request: ConformanceRequest | ConformanceReportRequest,
                          store: AuditStore) -> Verdict:
    """Each pack's rules judged from the trail: ok unless a rule that applies was not met.

    A report request judges every session of its period (`run_conformance_report`).
    """
    if isinstance(request, ConformanceReportRequest):
        return await run_conformance_report(request, store)
    trail = await store.trail(request.session_id)
    if not trail:
        return Verdict(f"no audit events for session {request.session_id}", ok=False)
    lines = [f"session {request.session_id}: conformance from its audit trail"]
    ok = True
    for name in request.packs:
        pack = conformance.PACKS[name]
        lines.append(f"{pack.title} [{pack.name}]")
        for finding in conformance.assess(pack, trail):
            ok = ok and finding.verdict is not conformance.Verdict.NOT_MET
            rows = ", ".join(f"#{row}" for row in finding.evidence) or "no rows"
            lines.append(f"  {finding.verdict.value.upper():<15} {finding.text}: "
                         f"{finding.why} ({rows})")
    return Verdict("\n".join(lines), ok)


async def run_conformance_report(request: ConformanceReportRequest,
                                 store: AuditStore) -> Verdict:
    """Every session that started in the period, judged per pack and counted per rule.

    Ok unless a session missed a rule that applied to it (or the period holds no session).
    """
    session_ids = await store.sessions_starting(request.start, request.end)
    period = (f"{request.start.date().isoformat()}.."
              f"{(request.end - timedelta(days=1)).date().isoformat()}")
    if not session_ids:
        return Verdict(f"no sessions started in {period}", ok=False)
    trails = {session_id: await store.trail(session_id) for session_id in session_ids}
    reports = [conformance_report.report(conformance.PACKS[name], trails)
               for name in request.packs]
    ok = not any(found.missed for found in reports)
    if request.csv:
        return Verdict(conformance_report.as_csv(reports).rstrip("\n"), ok)
    return Verdict(conformance_report.text(reports, period=period, sessions=len(session_ids)),
                   ok)


async def run_rebuild(store: AuditStore) -> Verdict:
    """Rebuild the projections from every audit event, in one transaction."""
    events = await store.rebuild_projections()
    return Verdict(f"rebuilt projections from {events} audit events", ok=True)


async def run_purge(request: PurgeRequest, store: AuditStore) -> Verdict:
    """Purge once; the database checks the retention period again and records the purge."""
    try:
        record = await store.purge(cutoff=request.cutoff,
                                   retention_years=request.retention_years,
                                   requested_by=request.requested_by, max_sessions=PURGE_BATCH)
    except asyncpg.InsufficientPrivilegeError as error:  # the database's own retention check
        return Verdict(f"refused by the database: {error}", ok=False)
    text = (f"purged {record.sessions} sessions ({record.events} audit events) recorded before "
            f"{request.cutoff.date().isoformat()}; purge record #{record.purge_id}")
    if record.sessions == PURGE_BATCH:
        text += "; more remain: run it again"
    return Verdict(text, ok=True)


async def replay_session(client: Client, store: AuditStore, setup: ReplaySetup,
                         session_id: str) -> replay_.ReplayReport:
    """Fetch, replay and cross-check one session."""
    report = replay_.ReplayReport(session_id)
    handle = client.get_workflow_handle(replay_.workflow_id_of(session_id))
    try:
        history = await handle.fetch_history()
    except RPCError as error:
        if error.status is not RPCStatusCode.NOT_FOUND:
            raise
        archived = await store.archived_history(session_id)  # kept at close, past retention
        if archived is None:
            report.mismatches.append(_missing(handle.id))
            return report
        history = archived
    replayer = replay_.new_replayer(setup.workflows, client.data_converter, setup.runner)
    report.replay_failure = await replay_.replay_failure(replayer, history)
    fetched = _Fetched(session_id, history,
                       await replay_.history_activities(history, client.data_converter),
                       await store.trail(session_id))
    report.mismatches.extend(await _checked(fetched, client))
    return report


async def _checked(fetched: _Fetched, client: Client) -> list[str]:
    """A fetched session's problems: a workflow that stopped early, then the cross-check."""
    assert fetched.history is not None
    problems: list[str] = []
    stopped = await replay_.stopped_problem(fetched.history, client.data_converter)
    if stopped is not None:
        problems.append(stopped)
    running = replay_.workflow_status(fetched.history) == "running"
    problems += replay_.cross_check(fetched.activities, fetched.trail, closed=not running)
    return problems


def _progress(done: int, total: int) -> None:
    if not sys.stderr.isatty():
        return
    width = 30
    filled = width * done // max(total, 1)
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end="",
          file=sys.stderr, flush=True)
    if done == total:
        print(file=sys.stderr)


@dataclass(frozen=True)
class _Fetched:
    """One session's history (None: Temporal has none), its activities and trail."""

    session_id: str
    history: WorkflowHistory | None
    activities: list[replay_.HistoryActivity]
    trail: list[AuditEvent]


async def _fetch(client: Client, store: AuditStore, session_id: str) -> _Fetched:
    """A session's history (decoded) and trail, fetched at the same time."""
    handle = client.get_workflow_handle(replay_.workflow_id_of(session_id))
    trail = asyncio.create_task(store.trail(session_id))
    activities: list[replay_.HistoryActivity] = []
    try:
        history: WorkflowHistory | None = await handle.fetch_history()
    except RPCError as error:
        if error.status is not RPCStatusCode.NOT_FOUND:
            trail.cancel()
            raise
        history = await store.archived_history(session_id)  # kept at close, past retention
    except BaseException:
        trail.cancel()
        raise
    if history is not None:
        try:
            activities = await replay_.history_activities(history, client.data_converter)
        except BaseException:
            trail.cancel()
            raise
    return _Fetched(session_id, history, activities, await trail)


def _missing(workflow_id: str) -> str:
    return (f"no workflow history in Temporal (workflow {workflow_id}) nor in the archive; "
            "past the namespace's retention before it was archived, or never started")


async def _sessions(store: AuditStore) -> AsyncIterator[str]:
    """Every session (and notice) with a trail, in order, `PAGE` per query.

    Caring-contacts series are left out: a series continues as new after each message, so
    no one history holds its trail (their chains are verified by `audit verify`).
    """
    after = ""
    while session_ids := await store.session_ids(after=after, limit=PAGE):
        for session_id in session_ids:
            if not replay_.is_series(session_id):
                yield session_id
        after = session_ids[-1]


async def _fetched_in_order(client: Client, store: AuditStore,
                            session_ids: AsyncIterator[str]) -> AsyncGenerator[_Fetched]:
    """`_fetch` for each session, `IN_FLIGHT` at a time, yielded in session order."""
    window: deque[asyncio.Task[_Fetched]] = deque()
    try:
        more = True
        while more or window:
            while more and len(window) < IN_FLIGHT:
                session_id = await anext(session_ids, None)
                if session_id is None:
                    more = False
                else:
                    window.append(asyncio.create_task(_fetch(client, store, session_id)))
            if window:
                yield await window.popleft()
    finally:
        for task in window:
            task.cancel()
        await asyncio.gather(*window, return_exceptions=True)


async def _replay_all(client: Client, store: AuditStore,
                      setup: ReplaySetup) -> AsyncGenerator[replay_.ReplayReport]:
    """Every session's report, in session order.

    Histories are fetched `IN_FLIGHT` at a time while one Replayer (one replay worker)
    replays them one after the other; no describe(): a history's last event says whether
    the workflow is running, completed, or stopped early (failed, terminated, timed out).
    """
    pending: deque[_Fetched] = deque()
    """Fetched sessions handed to the replayer, whose results have not come back yet."""
    missing: deque[replay_.ReplayReport] = deque()
    """Sessions without a history, reported in order before the next replayed one."""

    async def histories() -> AsyncIterator[WorkflowHistory]:
        fetching = _fetched_in_order(client, store, _sessions(store))
        async with contextlib.aclosing(fetching):
            async for fetched in fetching:
                if fetched.history is None:
                    report = replay_.ReplayReport(fetched.session_id)
                    report.mismatches.append(
                        _missing(replay_.workflow_id_of(fetched.session_id)))
                    missing.append(report)
                    continue
                pending.append(fetched)
                yield fetched.history

    replayer = replay_.new_replayer(setup.workflows, client.data_converter, setup.runner)
    async with replayer.workflow_replay_iterator(histories()) as results:
        async for result in results:
            while missing:
                yield missing.popleft()
            fetched = pending.popleft()
            if result.history.workflow_id != replay_.workflow_id_of(fetched.session_id):
                msg = (f"replayed {result.history.workflow_id}, expected "
                       f"{replay_.workflow_id_of(fetched.session_id)}")
                raise RuntimeError(msg)
            report = replay_.ReplayReport(fetched.session_id)
            report.replay_failure = replay_.describe_failure(result.replay_failure)
            report.mismatches.extend(await _checked(fetched, client))
            yield report
    while missing:
        yield missing.popleft()


async def run_replay(request: ReplayRequest, client: Client, store: AuditStore,
                     setup: ReplaySetup,
                     progress: Callable[[int, int], None] = _progress) -> Verdict:
    """One session, or every session, paged, with a progress bar and a summary."""
    if request.session_id is not None:
        report = await replay_session(client, store, setup, request.session_id)
        return Verdict(report.describe(), report.ok)
    total = await store.session_count()
    lines: list[str] = []
    done = {False: 0, True: 0}  # by whether the workflow is a notice's
    failed = {False: 0, True: 0}
    reports = _replay_all(client, store, setup)
    async with contextlib.aclosing(reports):
        async for report in reports:
            notice = replay_.is_notice(report.session_id)
            done[notice] += 1
            if not report.ok:
                failed[notice] += 1
                lines.append(report.describe())
            progress(sum(done.values()), total)
    summary = (f"replayed {done[False]} sessions: {done[False] - failed[False]} OK, "
               f"{failed[False]} mismatched")
    if done[True]:
        summary += (f"; {done[True]} notices: {done[True] - failed[True]} OK, "
                    f"{failed[True]} mismatched")
    lines.append(summary)
    return Verdict("\n".join(lines), not any(failed.values()))
