-- The audit history: one row per event, append-only, (session_id, sequence) unique so a
-- retried append can never write a second row.
CREATE TABLE audit_events (
    session_id  text        NOT NULL,
    sequence    integer     NOT NULL CHECK (sequence >= 1),
    event_type  text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    data        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (session_id, sequence)
);

CREATE FUNCTION refuse_audit_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION refuse_audit_change();

CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();

-- One row per closed session: the attendance history follow-up planning reads.
CREATE TABLE attendance (
    session_id   text        PRIMARY KEY,
    client_ref   text        NOT NULL,
    therapist_id text        NOT NULL,
    start_at     timestamptz NOT NULL,
    outcome      text        NOT NULL,
    closed_at    timestamptz NOT NULL
);
CREATE INDEX attendance_client_start ON attendance (client_ref, start_at);

-- Alerts and tasks for therapists; the key makes creation idempotent.
CREATE TABLE therapist_inbox (
    key          text        PRIMARY KEY,
    session_id   text        NOT NULL,
    therapist_id text        NOT NULL,
    kind         text        NOT NULL,
    priority     text        NOT NULL,
    title        text        NOT NULL,
    status       text        NOT NULL DEFAULT 'open',
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX therapist_inbox_open ON therapist_inbox (therapist_id) WHERE status = 'open';

CREATE TABLE follow_up_plans (
    session_id text        PRIMARY KEY,
    client_ref text        NOT NULL,
    plan       jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The simulated phone: what a demo or test scripts per client, and every call, voicemail
-- and message it "placed", keyed by idempotency key so a retry is never a second call.
CREATE TABLE sim_phone_scripts (
    phone            text    PRIMARY KEY,
    behaviour        text    NOT NULL,
    callback_seconds integer
);

CREATE TABLE sim_phone_log (
    idempotency_key text        PRIMARY KEY,
    session_id      text        NOT NULL,
    kind            text        NOT NULL,
    to_number       text        NOT NULL,
    body            text,
    result          text        NOT NULL,
    placed_at       timestamptz NOT NULL DEFAULT now()
);

-- Call-backs the simulated phone owes: delivered as `client_responded` signals.
CREATE TABLE sim_phone_callbacks (
    session_id   text        PRIMARY KEY,
    due_at       timestamptz NOT NULL,
    delivered_at timestamptz
);
