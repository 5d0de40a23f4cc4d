"""`starter.py clients add|update|show|export|consent|import`: the client directory.

Parse and render only: every verb calls `application.clients`. JSON goes to stdout (show,
export), one line saying what was done otherwise; bad input is one line naming the field
with exit code 2, an unknown client exit code 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from missed_session.application.clients import ClientUseCases
from missed_session.application.results import Result
from missed_session.application.service import Application, UnavailableError
from missed_session.cli.render import BAD_INPUT, EXIT_CODES, FAILED, fail
from missed_session.clients.fhir_import import FHIRImportError, client_from_fhir
from missed_session.clients.hl7_import import HL7ImportError, client_from_hl7
from missed_session.config import ConfigurationError, load_settings
from missed_session.domain.clients import ConsentSource, ConsentSubject
from missed_session.domain.models import ConsentScope

VERB = "clients"
MAX_FILE_BYTES = 1_000_000


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


def is_clients(argv: list[str]) -> bool:
    """Whether the command line is a `clients` verb (handled here, not by the main parser)."""
    return bool(argv) and argv[0] == VERB


def parser() -> argparse.ArgumentParser:
    """The `clients` verbs and their flags."""
    top = _Parser(prog="starter.py clients", description="the client directory")
    verbs = top.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    for name, what in (("add", "add a client (JSON file, '-' for stdin)"),
                       ("update", "replace a known client's entry (JSON file)")):
        verb = verbs.add_parser(name, help=what)
        verb.add_argument("--file", required=True)
        verb.add_argument("--by", required=True, help="staff id recording it")
    for name, what in (("show", "the entry and what consent allows now"),
                       ("export", "right of access: entry, changes, consent history, FHIR")):
        verbs.add_parser(name, help=what).add_argument("client_ref")
    consent = verbs.add_parser("consent", help="record a consent given or withdrawn")
    consent.add_argument("client_ref", nargs="?", default=None,
                         help="omit only for a number-wide STOP/START (text, --contact-point)")
    consent.add_argument("--subject", required=True, choices=[s.value for s in ConsentSubject])
    consent.add_argument("--contact-point", default=None)
    given = consent.add_mutually_exclusive_group(required=True)
    given.add_argument("--give", action="store_true")
    given.add_argument("--withdraw", action="store_true")
    consent.add_argument("--scope", choices=[s.value for s in ConsentScope], default=None)
    consent.add_argument("--date", default=None, help="when given/withdrawn (ISO, with offset)")
    consent.add_argument("--source", default=None, choices=[s.value for s in ConsentSource])
    consent.add_argument("--by", required=True)
    imported = verbs.add_parser("import", help="add or update from FHIR or HL7 v2")
    kind = imported.add_mutually_exclusive_group(required=True)
    kind.add_argument("--fhir", help="JSON: a Patient, or a Bundle with Patient/RelatedPerson")
    kind.add_argument("--hl7", help="an HL7 v2 message with PID (and NK1)")
    imported.add_argument("--time-zone", default=None)
    imported.add_argument("--by", required=True)
    return top


async def run_clients(argv: list[str]) -> int:
    """Run one `clients` verb; its exit code."""
    try:
        args = parser().parse_args(argv[1:])
        data = _input(args)
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    except (ValueError, OSError, FHIRImportError, HL7ImportError) as error:
        return fail(str(error), BAD_INPUT)
    try:
        settings = load_settings()
    except ConfigurationError as error:
        return fail(str(error), BAD_INPUT)
    async with Application(settings) as app:
        try:
            clients = await app.clients()
        except UnavailableError as error:
            return fail(str(error), FAILED)
        return _render(await _execute(args, data, clients))


def _input(args: argparse.Namespace) -> Any:
    """The verb's input, read and checked before anything connects."""
    if args.verb in {"add", "update"}:
        return json.loads(_read(args.file))
    if args.verb == "consent":
        return {
            "client_ref": args.client_ref, "subject": args.subject,
            "contact_point": args.contact_point, "scope": args.scope,
            "granted": bool(args.give), "effective_at": args.date, "source": args.source,
            "recorded_by": args.by,
        }
    if args.verb == "import":
        if args.hl7 is not None:
            return client_from_hl7(_read(args.hl7), time_zone=args.time_zone or "")
        resource = json.loads(_read(args.fhir))
        if resource.get("resourceType") == "Bundle":
            found = [entry.get("resource", {}) for entry in resource.get("entry", [])]
            patients = [r for r in found if r.get("resourceType") == "Patient"]
            if len(patients) != 1:
                msg = "Bundle.entry: exactly one Patient is required"
                raise ValueError(msg)
            related = [r for r in found if r.get("resourceType") == "RelatedPerson"]
            return client_from_fhir(patients[0], related, time_zone=args.time_zone)
        return client_from_fhir(resource, time_zone=args.time_zone)
    return None


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read(MAX_FILE_BYTES + 1)[:MAX_FILE_BYTES]
    file = Path(path)
    if file.stat().st_size > MAX_FILE_BYTES:
        msg = f"--file: larger than {MAX_FILE_BYTES} bytes"
        raise ValueError(msg)
    return file.read_text(encoding="utf-8")


async def _execute(args: argparse.Namespace, data: Any, clients: ClientUseCases) -> Result:
    if args.verb == "add":
        return await clients.add(data, recorded_by=args.by)
    if args.verb == "update":
        return await clients.update(data, recorded_by=args.by)
    if args.verb in {"show", "export"}:
        read = clients.show if args.verb == "show" else clients.export
        return await read(args.client_ref)
    if args.verb == "consent":
        return await clients.consent(data)
    record = data.model_dump(mode="json")
    known = await clients.directory.get(data.ref)
    if known is None:
        return await clients.add(record, recorded_by=args.by, source="import")
    return await clients.update(record, recorded_by=args.by, source="import")


def _render(result: Result) -> int:
    code = EXIT_CODES[result.kind]
    if not result.ok:
        return fail(result.message, code)
    if result.data is not None and ("client" in result.data):
        print(json.dumps(result.data, indent=2, default=str))
    else:
        print(result.message)
    return code
