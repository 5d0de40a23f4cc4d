-- Checkpoints: signed statements of a session's trail as it stood (how many rows, the head
-- hash, a digest of each row's content), written by the service with a key PostgreSQL
-- never holds (missed_session/store/checkpoints.py). Whoever rewrites audit_events and
-- recomputes every hash cannot sign a matching checkpoint, so `audit verify` names the
-- rewrite. Append-only, like the trail.
CREATE TABLE audit_checkpoints (
    session_id  text        NOT NULL,
    sequence    integer     NOT NULL CHECK (sequence >= 1),
    head        text        NOT NULL,
    digests     text        NOT NULL,
    closing     boolean     NOT NULL,
    written_at  timestamptz NOT NULL,
    key_id      text        NOT NULL,
    signature   text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, sequence)
);

CREATE TRIGGER audit_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION refuse_audit_change();

CREATE TRIGGER audit_checkpoints_no_truncate
    BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();

-- The checkpointer follows the trail by the time rows were recorded.
CREATE INDEX audit_events_recorded_at ON audit_events (recorded_at);
