"""The command line's shape: every command, flag and choice, and nothing it does.

argparse is made to raise instead of printing usage, so every bad input is one line
naming the flag (exit 2) before anything connects or starts.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NoReturn

from missed_session.api.tokens import Scope
from missed_session.application.sessions import Message
from missed_session.domain.models import DecisionKind, Modality, ResponseChannel, RiskTier

DEFAULT_CONCURRENCY = 32
"""Bookings started at once; the server, not the CLI, should be the limit."""
DECISIONS = {"mark-safe": DecisionKind.MARK_SAFE, "escalate-now": DecisionKind.ESCALATE_NOW,
             "stand-down": DecisionKind.STAND_DOWN, "add-note": DecisionKind.ADD_NOTE}
"""Command -> the clinician decision (the workflow's update of the same name)."""
MESSAGES = {"check-in": Message.CHECK_IN, "cancel": Message.CANCEL,
            "reschedule": Message.RESCHEDULE, "text-reply": Message.TEXT_REPLY,
            "responded": Message.CLIENT_RESPONDED}
"""Command -> the news it sends the session's workflow."""
BOOKING_FLAGS = {
    "session_id": "session_id", "therapist_id": "therapist_id", "start": "start",
    "duration": "duration_minutes", "modality": "modality", "risk_tier": "risk_tier",
}
CLIENT_FLAGS = {
    "client_ref": "ref", "first_name": "first_name", "phone": "phone", "email": "email",
    "time_zone": "time_zone",
}
EMERGENCY_FLAGS = {
    "emergency_name": "name", "emergency_phone": "phone",
    "emergency_consent_date": "consent_date",
}
PROTOCOL_FLAGS = {
    "grace_period": "grace_period_minutes", "attempts": "max_attempts",
    "spacing": "attempt_spacing_minutes",
}
ALL_BOOKING_FLAGS = (*BOOKING_FLAGS, *CLIENT_FLAGS, *EMERGENCY_FLAGS, *PROTOCOL_FLAGS)
"""Every flag that describes a booking (argparse dest names)."""


class UsageError(ValueError):
    """Bad input on the command line; the message names the flag or field."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage, so every bad input is one line."""

    def error(self, message: str) -> NoReturn:
        """Turn argparse's complaint into a UsageError for `main` to print."""
        raise UsageError(message)


def _schedule_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    schedule = commands.add_parser("schedule", help="start a session's workflow")
    schedule.add_argument("--file", metavar="BOOKING_JSON",
                          help="the SessionBooking as JSON, instead of the flags below; a "
                               "day's schedule as JSON lines (one booking a line) when the "
                               "name ends in .jsonl or .ndjson: every line is validated "
                               "before any session starts")
    schedule.add_argument("--concurrency", type=int,
                          help="day file only: sessions started at once "
                               f"(default {DEFAULT_CONCURRENCY})")
    schedule.add_argument("--session-id")
    schedule.add_argument("--client-ref", help="pseudonymous client id (safe to log)")
    schedule.add_argument("--first-name")
    schedule.add_argument("--phone", help="E.164, e.g. +14155550123")
    schedule.add_argument("--email")
    schedule.add_argument("--time-zone", help="the client's IANA time zone")
    schedule.add_argument("--therapist-id")
    schedule.add_argument("--start", help="ISO 8601 with a UTC offset")
    schedule.add_argument("--duration", type=int, help="minutes")
    schedule.add_argument("--modality", choices=[m.value for m in Modality])
    schedule.add_argument("--risk-tier", choices=[r.value for r in RiskTier])
    schedule.add_argument("--emergency-name")
    schedule.add_argument("--emergency-phone")
    schedule.add_argument("--emergency-consent-date", metavar="YYYY-MM-DD",
                          help="when the client consented; its presence means consent")
    schedule.add_argument("--grace-period", type=int,
                          help="minutes; the high-risk grace period never exceeds it")
    schedule.add_argument("--attempts", type=int, help="outreach attempts")
    schedule.add_argument("--spacing", type=int, help="minutes between outreach attempts")


VERB_GROUPS = """\
verb groups, each with its own --help:
  audit verify|replay|export|purge|conformance
                                     compliance review: hash chains, history replay
                                     (sessions and notices), FHIR/JSONL export, purge,
                                     published standards rule by rule
  projections rebuild                the attendance and open-task tables, from the trail
  clients add|update|show|export|consent|import
                                     the client directory and dated consent
  roster load|show|on-call           the practice's clinicians and on-call rota
  notices list|show|ack|resolve|sms-reply
                                     alerts and tasks to clinicians
  console set-password               clinician console accounts
  kept-texts [--all] [--retry-now]   inbound texts kept while no worker ran
  simulate NUMBER answer|no-answer|voicemail-full|call-back --after MINUTES|invalid
                                     script the simulated phone (demos and tests)
  caring start|end|show              caring contacts after an unresolved episode
"""
"""The commands with parsers of their own (`cli.main._special_action`), for --help."""


def build_parser() -> argparse.ArgumentParser:
    """The command line; booking flags are optional here so the model names what is missing."""
    parser = _Parser(prog="starter.py",
                     description="The scheduling system's and the operators' command line.",
                     epilog=VERB_GROUPS, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _schedule_parser(commands)
    bulk = commands.add_parser(
        "import", help="start a day's schedule from NDJSON or CSV: bad lines are reported "
        "with their reasons, the others start; safe to run again")
    bulk.add_argument("import_file", metavar="FILE", help="*.ndjson, *.jsonl or *.csv")
    bulk.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                      help=f"sessions started at once (default {DEFAULT_CONCURRENCY})")
    bulk.add_argument("--no-progress", action="store_true", help="no progress bar")
    token = commands.add_parser("new-token", help="print a new HTTP API bearer token and "
                                "the digest to configure in MSR_API_TOKENS")
    token.add_argument("--scope", required=True, choices=[s.value for s in Scope])
    token.add_argument("--clinician", metavar="ID",
                       help="with --scope clinician: the roster clinician the token is "
                       "issued to (the only kind of token a decision is recorded with)")

    check_in = commands.add_parser("check-in", help="the client arrived or joined")
    cancel = commands.add_parser("cancel", help="the session will not take place")
    cancel.add_argument("--reason", default="")
    reschedule = commands.add_parser("reschedule", help="move the session's start")
    reschedule.add_argument("--start", required=True, help="ISO 8601 with a UTC offset")
    reschedule.add_argument("--reason", default="")
    responded = commands.add_parser("responded", help="the client got back in touch")
    responded.add_argument("--channel", required=True, choices=[c.value for c in ResponseChannel])
    responded.add_argument("--responder", help="`client` (default) or who spoke for them")
    responded.add_argument("--note", default="", help="staff note, kept in the audit trail")
    text_reply = commands.add_parser("text-reply", help="the client texted back (STOP opts out)")
    text_reply.add_argument("--body", required=True, help="what the client wrote")
    decided = []
    for command, kind in DECISIONS.items():
        decision = commands.add_parser(command, help=f"clinician decision: {kind.value}")
        decision.add_argument("--clinician", required=True, help="the clinician's staff id")
        if kind is DecisionKind.ADD_NOTE:
            decision.add_argument("--note", required=True, help="kept in the audit trail")
        else:
            decision.add_argument("--reason", required=True, help="why; kept in the audit trail")
        if kind is DecisionKind.ESCALATE_NOW:
            decision.add_argument("--legal-basis", required=True,
                                  help="e.g. 'vital interests: imminent risk, no consent'")
        decided.append(decision)
    status = commands.add_parser("status", help="where the session is in the protocol")
    audit = commands.add_parser(
        "audit", help="the session's audit trail (PostgreSQL only); also `audit verify|replay"
        " (SESSION_ID | --all)`, `audit export SESSION_ID --format jsonl|fhir` and `audit purge"
        " --before DATE`: see `audit verify --help`; `projections rebuild` rebuilds the"
        " attendance and open-task projections")
    key = commands.add_parser("new-key", help="print a new encryption key as MSR_ENCRYPTION_KEYS")
    key.add_argument("--key-id", default=f"key-{datetime.now(UTC):%Y%m%d}",
                     help="its id in encryption_keys (default: key-<today>)")
    for subparser in (check_in, cancel, reschedule, responded, text_reply, *decided, status,
                      audit):
        subparser.add_argument("session_id", metavar="SESSION_ID")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line; raises UsageError (never exits, except for --help)."""
    return build_parser().parse_args(argv)
