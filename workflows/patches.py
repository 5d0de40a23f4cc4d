"""The session's patches, asked through one object so that a new session asks one of them.

Each `workflow.patched(id)` that first answers True in a new workflow writes a marker, and
the SDK core adds an upsert of the `TemporalChangeVersion` search attribute: one more
visibility write on the server per patch. A no-show asked three patches in the minute a
burst of sessions is busiest (`ladder-in-step`, `notices-track-reason`, `notice-workflows`),
and a ladder five more later. `Patches.has` asks the generation's own patch (`TODAY`) in
place of the first of them: a session that gets True runs today's code for every patch of
the generation (`GENERATION`) without a marker of its own; a session that gets False (its
history was recorded before the generation, and is being replayed) asks each patch where it
always did, with the same answers as before.

`GENERATION` is closed. A patch added later is not in it: a session that recorded `TODAY`
before that patch existed would otherwise be told, on replay, that it took the new branch.
A later patch is asked on its own (`has` passes it to `workflow.patched`), or a new
generation id covers the old generation and the new patches together.

An answer, once given, never changes: each id is answered once per workflow and kept, as
the SDK keeps its own.
"""

from __future__ import annotations

from temporalio import workflow

TODAY = "patches-2026-12-08"
"""Patch id of the generation: a session that has it has every patch in `GENERATION`."""
STATUS_AT_OUTREACH = "status-at-outreach"
"""Patch id: at the no-show the session's status search attribute moves once, to where the
protocol goes next (outreach, a hold, a joined ladder), instead of to `no_show` and then
again in the same workflow task. Only in `GENERATION`: no marker of its own is ever written
by a new session, and histories recorded before it replay without it."""

ALERT_PLANNED = "alert-planned"
"""Patch id: the no-show's records (`document_no_show`) also plan the alert's climb, where
the session planned it in an activity of its own after them. Only in `GENERATION`."""

GENERATION = frozenset({
    "no-show-brake", "caring-offer", "await-clinician", "notice-workflows",
    "await-acknowledgment", "notices-track-reason", "letter-step", "one-ladder",
    "ladder-in-step", "trail-closing", STATUS_AT_OUTREACH, ALERT_PLANNED,
})
"""The patches a session with `TODAY` has without asking: every patch the session workflow
knew on 2026-12-08 (the ids are spelled out here, not imported, so that the generation
cannot grow by accident when a module adds one)."""


class Patches:
    """One workflow's answers to `workflow.patched`, asked the fewest times."""

    def __init__(self) -> None:
        self._answers: dict[str, bool] = {}
        self._today: bool | None = None
        """Whether this session has `TODAY`; None until a patch of the generation is asked."""

    def has(self, patch_id: str) -> bool:
        """Whether this workflow takes the patched branch of `patch_id`."""
        answer = self._answers.get(patch_id)
        if answer is None:
            answer = self._ask(patch_id)
            self._answers[patch_id] = answer
        return answer

    def _ask(self, patch_id: str) -> bool:
        if patch_id not in GENERATION:
            return workflow.patched(patch_id)
        if self._today is None:
            self._today = workflow.patched(TODAY)
        return self._today or workflow.patched(patch_id)
