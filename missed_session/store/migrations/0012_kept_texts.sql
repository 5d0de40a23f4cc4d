-- Inbound texts (a client's reply by Twilio or the signed webhook channel) that could not
-- reach their session at once: no worker took the workflow update within the bound, or
-- Temporal could not be reached. Kept here, keyed by the provider's message id, until the
-- API's deliverer has delivered them (update accepted), the session refused them, or the
-- session is gone. A provider redelivering the same id finds the row: one message.
--
-- Nothing readable about the person: `sealed` is the sender's number and the text sealed
-- with the payload encryption (AES-256-GCM, the key id inside, so keys rotate), and it is
-- erased once the text is settled. Session ids, counts, outcomes and error types only.
CREATE TABLE kept_texts (
    message_id      text        PRIMARY KEY,
    channel         text        NOT NULL CHECK (channel IN ('twilio', 'webhook')),
    kind            text        NOT NULL CHECK (kind IN ('opt_out', 'response')),
    sealed          bytea,
    sessions_known  boolean     NOT NULL,
    state           text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'settled')),
    outcome         text        CHECK (outcome IN ('delivered', 'refused', 'session_gone',
                                                   'no_open_session', 'unreadable')),
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    received_at     timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    settled_at      timestamptz,
    CHECK ((state = 'pending') = (outcome IS NULL)),
    CHECK (state = 'pending' OR sealed IS NULL)
);
CREATE INDEX kept_texts_due ON kept_texts (next_attempt_at) WHERE state = 'pending';

-- One row per open session the text is for: what became of it there.
CREATE TABLE kept_text_deliveries (
    message_id  text        NOT NULL REFERENCES kept_texts ON DELETE CASCADE,
    session_id  text        NOT NULL,
    outcome     text        NOT NULL DEFAULT 'pending'
                            CHECK (outcome IN ('pending', 'delivered', 'refused', 'session_gone')),
    reason      text,
    settled_at  timestamptz,
    PRIMARY KEY (message_id, session_id)
);
