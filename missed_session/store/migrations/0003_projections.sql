-- Projections: tables derived from audit_events alone, maintained by the store in the same
-- transaction as each append, and rebuilt from scratch by `starter.py projections rebuild`
-- (missed_session/store/projections.py). They can always be thrown away and rebuilt.

-- One row per session: client, therapist, start (as last rescheduled), outcome once closed.
CREATE TABLE projection_attendance (
    session_id   text        PRIMARY KEY,
    client_ref   text        NOT NULL,
    therapist_id text        NOT NULL,
    start_at     timestamptz NOT NULL,
    outcome      text,
    closed_at    timestamptz
);

-- Therapist tasks the trail has created: the escalation-blocked decision and the follow-up
-- plan's tasks. No event closes a task yet, so every task here is open.
CREATE TABLE projection_open_tasks (
    key          text        PRIMARY KEY,
    session_id   text        NOT NULL,
    therapist_id text        NOT NULL,
    kind         text        NOT NULL,
    priority     text        NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX projection_open_tasks_therapist ON projection_open_tasks (therapist_id);

-- Existing trails are projected once by the migration's Python step.
