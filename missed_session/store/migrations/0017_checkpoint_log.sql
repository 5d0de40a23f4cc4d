-- The checkpoint log: every checkpoint of every trail, in the order written, as one
-- append-only chain (a transparency-log style sequence). Entry `position` names the hash of
-- entry `position - 1` (`prev_hash`; 64 zeros for the first) and commits to its checkpoint
-- (`checkpoint_digest`, SHA-256 of the checkpoint's signed statement); each entry is signed
-- with the checkpoint key, which PostgreSQL never holds (missed_session/store/checkpoints.py).
-- The latest head is also written outside PostgreSQL (an append-only file beside the keys,
-- or a sink of the deployment's), so cutting the log's tail shows. Positions are gapless:
-- the checkpointer appends under an advisory lock.
CREATE TABLE checkpoint_log (
    position          bigint      PRIMARY KEY CHECK (position >= 1),
    session_id        text        NOT NULL,
    sequence          integer     NOT NULL CHECK (sequence >= 1),
    checkpoint_digest text        NOT NULL,
    prev_hash         text        NOT NULL,
    entry_hash        text        NOT NULL,
    written_at        timestamptz NOT NULL,
    key_id            text        NOT NULL,
    signature         text        NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (session_id, sequence)
);

CREATE TRIGGER checkpoint_log_append_only
    BEFORE UPDATE OR DELETE ON checkpoint_log
    FOR EACH ROW EXECUTE FUNCTION refuse_audit_change();

CREATE TRIGGER checkpoint_log_no_truncate
    BEFORE TRUNCATE ON checkpoint_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();

-- TRUNCATE guards on every append-only table that had only row triggers (a row trigger
-- does not fire on TRUNCATE), and on the records written once at close (the purge removes
-- their rows with DELETE, never TRUNCATE).
CREATE TRIGGER roster_versions_no_truncate
    BEFORE TRUNCATE ON roster_versions
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();

CREATE TRIGGER notice_refusals_no_truncate
    BEFORE TRUNCATE ON notice_refusals
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();

CREATE TRIGGER console_access_log_no_truncate
    BEFORE TRUNCATE ON console_access_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();

CREATE TRIGGER client_changes_no_truncate
    BEFORE TRUNCATE ON client_changes
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();

CREATE TRIGGER attendance_no_truncate
    BEFORE TRUNCATE ON attendance
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();

CREATE TRIGGER follow_up_plans_no_truncate
    BEFORE TRUNCATE ON follow_up_plans
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();

CREATE TRIGGER schema_migrations_no_truncate
    BEFORE TRUNCATE ON schema_migrations
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();

-- What the service found wrong with a trail outside the protocol: a trail that no longer
-- extends what was checkpointed (the checkpointer refused to sign it), a forged checkpoint,
-- a cut checkpoint log, a session workflow that stopped without its `closed` row. One row
-- per session and kind, written when first found (an urgent notice goes to the clinical
-- supervisor at the same time); `audit verify --all` reports them. Append-only.
CREATE TABLE integrity_findings (
    session_id text        NOT NULL,
    kind       text        NOT NULL,
    problem    text        NOT NULL,
    found_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, kind)
);

CREATE TRIGGER integrity_findings_append_only
    BEFORE UPDATE OR DELETE ON integrity_findings
    FOR EACH ROW EXECUTE FUNCTION refuse_audit_change();

CREATE TRIGGER integrity_findings_no_truncate
    BEFORE TRUNCATE ON integrity_findings
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();
