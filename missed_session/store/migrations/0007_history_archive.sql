-- Temporal's history of every closed session, as Temporal stored it (payloads still
-- sealed with the service's keys), kept beside its trail for as long as the trail: the
-- namespace deletes histories after its retention period (a day on the dev server), and
-- `audit replay` needs them for six years. Written by the worker's archiver
-- (missed_session/audit/archive.py); append-only, like the trail.
CREATE TABLE history_archive (
    session_id  text        PRIMARY KEY,
    workflow_id text        NOT NULL,
    run_id      text        NOT NULL,
    status      text        NOT NULL,
    close_time  timestamptz,
    history     text        NOT NULL,
    sha256      text        NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER history_archive_append_only
    BEFORE UPDATE OR DELETE ON history_archive
    FOR EACH ROW EXECUTE FUNCTION refuse_audit_change();

CREATE TRIGGER history_archive_no_truncate
    BEFORE TRUNCATE ON history_archive
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();
