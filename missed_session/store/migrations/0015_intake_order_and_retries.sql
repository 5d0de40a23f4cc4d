-- Intake (issue 23): answers that can change are not final, and ordering by our receipt.
--
-- `final`: a stored answer is replayed to a repeated delivery only when it is final (applied,
-- recorded, refused by the session, malformed). An answer that depends on state or
-- configuration (no such session yet, a setting missing, a sender clock ahead of ours) is
-- kept for the record but the message is processed again when it comes again; `attempts`
-- counts how often it came.
ALTER TABLE intake_messages ADD COLUMN final boolean NOT NULL DEFAULT true;
ALTER TABLE intake_messages ADD COLUMN attempts integer NOT NULL DEFAULT 1;
ALTER TABLE intake_messages ADD COLUMN feed text;

-- The newest sender time applied to a session, per sender feed (an HL7 sending application
-- and facility, the FHIR sender, Cal.com, Calendly): a sender's clock is compared only with
-- its own earlier messages, never with another sender's, and never trusted beyond the
-- receiver's clock plus the allowed skew (those messages are refused before they get here).
CREATE TABLE intake_feed_order (
    session_id   text        NOT NULL,
    feed         text        NOT NULL,
    last_sent_at timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, feed)
);

-- intake_sessions.last_sent_at (one time per session, across senders) is no longer written.
