"""The letter step's side effect: render the letter and keep it for the practice to post.

The postal address is read from the client directory as the step runs (like consent, it
belongs to the client, not to the booking), used for the PDF and forgotten: it is never
logged and never returned. The PDF is written under the letters folder (beside the stack's
other data), owner-only (0600), at a path fixed by the session and the letter's number, and
renders the same bytes for the same letter, so a retried activity rewrites the same file
and reports the same digest.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import structlog
from temporalio import activity

from activities.outreach import Sender
from missed_session.channels.letter import render
from missed_session.domain import letters
from missed_session.domain.letters import LetterReport, LetterRequest
from missed_session.file_modes import write_owner_only
from missed_session.store.clients import ClientDirectory

log = structlog.get_logger(__name__)

FOLDER_NAME = "letters"
"""The letters folder's name under the stack's data folder (`MSR_DATA_DIR`)."""


class LetterActivities:
    """Prepares letters: the words, the PDF, the file."""

    def __init__(self, folder: Path, sender: Sender, directory: ClientDirectory) -> None:
        self._folder = folder
        self._sender = sender
        self._directory = directory

    @activity.defn
    async def prepare_letter(self, request: LetterRequest) -> LetterReport:
        """Render the session's letter `request.number` and keep it; where, and its digest."""
        record = await self._directory.get(request.client_ref)
        address = record.postal_address if record is not None else None
        letter = letters.compose(
            request.kind, dated=request.dated,
            first_name=record.first_name if record is not None else request.first_name,
            address=address, sender_name=self._sender.name,
            callback_number=self._sender.callback_number,
        )
        pdf = render(letter)
        relative = letters.letter_file(request.session_id, request.number, request.kind)
        await asyncio.to_thread(write_owner_only, self._folder / relative, pdf)
        report = LetterReport(file=str(relative), digest=hashlib.sha256(pdf).hexdigest(),
                              addressed=bool(letter.address))
        log.info("letter_prepared", session_id=request.session_id, letter=request.number,
                 kind=request.kind.value, addressed=report.addressed)
        return report
