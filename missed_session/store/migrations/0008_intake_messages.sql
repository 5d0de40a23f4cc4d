-- Scheduler standards intake (FHIR, HL7 v2, Cal.com, Calendly): what each delivered message
-- was answered, so a repeated delivery (the same MSH-10, the same webhook body) gets the
-- first answer back even after a restart, and every message is recorded, applied or not.
-- No payload is kept: only ids, the command's kind and the answer (which names fields,
-- never values).
CREATE TABLE intake_messages (
    source       text        NOT NULL,
    message_key  text        NOT NULL,
    session_id   text,
    command      text        NOT NULL,
    outcome      text        NOT NULL,
    sent_at      timestamptz,
    received_at  timestamptz NOT NULL DEFAULT now(),
    status       integer     NOT NULL,
    answer       text        NOT NULL,
    PRIMARY KEY (source, message_key)
);
CREATE INDEX intake_messages_session ON intake_messages (session_id, received_at);

-- What intake knows about each session it has touched: the start it last applied, the
-- sender's time of the newest message applied (an older one arriving later is recorded and
-- not applied), and whether a cancel arrived before the booking did.
CREATE TABLE intake_sessions (
    session_id         text        PRIMARY KEY,
    start              timestamptz,
    last_sent_at       timestamptz,
    cancelled_unbooked boolean     NOT NULL DEFAULT false,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- A scheduler that gives a rescheduled booking a new id (Cal.com, Calendly): every id the
-- session has had, mapped to the session.
CREATE TABLE intake_aliases (
    source      text NOT NULL,
    external_id text NOT NULL,
    session_id  text NOT NULL,
    PRIMARY KEY (source, external_id)
);
