"""What crosses the workflow/activity boundary: the payloads, in one place to read.

Every value a workflow hands an activity (or a child workflow) and every value it gets back
is serialised into the workflow's history as JSON, and read again on every replay and by
every worker that picks the workflow up later, possibly one built from newer code. This
package is where those payloads are defined, one module per activity group:

- `contracts.audit`: the trail's combined writes (`ClosingRecord`, `NoShowRecord`);
- `contracts.brake`: the mass no-show brake's question and answer (`BrakeCheck`,
  `BrakeVerdict`);
- `contracts.caring`: one caring-contacts message (`CaringRequest`, `CaringResult`);
- `contracts.notices`: the notice workflow's input and id and its activities' payloads
  (`NoticeRequest`, `notice_workflow_id`, `NoticePlanRequest`, `NoticePlan`,
  `RecipientQuery`, `Recipients`, `Recipient`, `NoticeDelivery`, `ResolutionDelivery`,
  `NoticeStateRecord`);
- `contracts.outreach`: the outreach steps' payloads. They are still defined in the domain
  (`OutreachRequest`, `EscalationRequest`, `TextCheck` in `domain.models`, `StepOutcome` in
  `domain.clients`, `LadderLookup` and `RunningLadder` in `domain.person`) and re-exported
  here, so this package lists them all; new code imports them from here.

Payloads the domain's own functions take or return stay with those functions and are only
named here: `FollowUpRequest` and `FollowUpPlan` (`domain.follow_up.plan_follow_up`),
`LetterRequest` and `LetterReport` (`domain.letters`), `TherapistNotice` and `AuditEvent`
(`domain.models`), `SessionBooking` (the session workflow's input).

The rule for every model here: **fields are only ever added, and only with a default.** A
new worker reads the payloads of histories recorded by older code (on replay, and when it
picks up a workflow mid-run), so a field without a default, a renamed field or a narrowed
type fails those workflows. Module paths are not part of the contract (payloads carry no
type names), so a model may move between modules freely. `tests/test_contracts.py` holds
every model's fields and fails on a lost field or a new required one.
"""
