"""Who may see and do what in the console.

Pure: a viewer and a session's therapist in, an answer out, so the rules are tested
without a browser.

A therapist sees their own clients' sessions; the on-call clinician and supervisors see
the practice; a compliance reviewer reads trails but decides nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ViewerRole(StrEnum):
    """The role a signed-in person acts in (from the roster in force, or the account)."""

    THERAPIST = "therapist"
    ON_CALL = "on_call_clinician"
    SUPERVISOR = "clinical_supervisor"
    COMPLIANCE = "compliance_reviewer"


PRACTICE_WIDE = frozenset({ViewerRole.ON_CALL, ViewerRole.SUPERVISOR, ViewerRole.COMPLIANCE})
"""Roles that see every client's sessions."""
DECIDERS = frozenset({ViewerRole.THERAPIST, ViewerRole.ON_CALL, ViewerRole.SUPERVISOR})
"""Roles that may record decisions and acknowledge notices."""


@dataclass(frozen=True)
class Viewer:
    """The signed-in person."""

    clinician_id: str
    """Staff id (roster id, or the reviewer's account id)."""
    role: ViewerRole
    """What they act as."""
    csrf_token: str
    """The token every form of their browser session carries."""
    session_ref: str | None = field(default=None, compare=False)
    """Which sign-in this is (a prefix of its stored token hash), for the audit trail."""

    @property
    def sees_practice(self) -> bool:
        """Whether every client's sessions are visible."""
        return self.role in PRACTICE_WIDE

    @property
    def decides(self) -> bool:
        """Whether they may act (decide, acknowledge, resolve)."""
        return self.role in DECIDERS

    @property
    def sees_board(self) -> bool:
        """The practice board is for supervisors and the on-call clinician."""
        return self.role in {ViewerRole.SUPERVISOR, ViewerRole.ON_CALL}


def may_view(viewer: Viewer, therapist_id: str | None) -> bool:
    """Whether `viewer` may read a session whose therapist is `therapist_id`."""
    return viewer.sees_practice or (therapist_id is not None
                                    and therapist_id == viewer.clinician_id)


def may_decide(viewer: Viewer, therapist_id: str | None) -> bool:
    """Whether `viewer` may record a decision on that session."""
    return viewer.decides and may_view(viewer, therapist_id)
