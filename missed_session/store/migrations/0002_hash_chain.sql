-- Tamper evidence: every audit row carries the hash of the session's previous row and its
-- own hash, SHA-256 over a canonical JSON encoding of the event and that previous hash
-- (missed_session/store/chain.py). The store computes both at append time, under a lock
-- per session, in the same transaction as the insert. Rows written before this migration
-- are chained once, in this migration's transaction, by a Python step
-- (missed_session/store/database.py: POST_MIGRATION).
ALTER TABLE audit_events ADD COLUMN prev_hash text;
ALTER TABLE audit_events ADD COLUMN hash text;

-- Retention. The one deletion the database allows is a purge through
-- purge_audit_sessions(): it sets a transaction-local flag, and the append-only trigger lets
-- a DELETE through only while that flag is on AND the row was recorded more than six years
-- ago (the HIPAA documentation period, and the smallest retention the service accepts).
-- Whoever sets the flag by hand can therefore delete nothing a purge could not. UPDATE and
-- TRUNCATE stay refused, always.
CREATE OR REPLACE FUNCTION refuse_audit_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Nested: OLD has recorded_at only on audit_events (audit_purges shares this function).
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_events'
       AND current_setting('msr.audit_purge', true) = 'on' THEN
        IF OLD.recorded_at < now() - interval '6 years'
           AND OLD.occurred_at < now() - interval '6 years' THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

-- Every purge leaves its own record, written in the purge's transaction; append-only too.
CREATE TABLE audit_purges (
    id              bigserial   PRIMARY KEY,
    purged_at       timestamptz NOT NULL DEFAULT now(),
    cutoff          timestamptz NOT NULL,
    retention_years integer     NOT NULL CHECK (retention_years >= 6),
    requested_by    text        NOT NULL,
    sessions        integer     NOT NULL,
    events          integer     NOT NULL,
    session_ids     text[]      NOT NULL
);

CREATE TRIGGER audit_purges_append_only
    BEFORE UPDATE OR DELETE ON audit_purges
    FOR EACH ROW EXECUTE FUNCTION refuse_audit_change();

CREATE TRIGGER audit_purges_no_truncate
    BEFORE TRUNCATE ON audit_purges
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();

-- Deletes whole sessions (closed, every event before `cutoff`), at most `max_sessions`,
-- with the records derived from them (attendance, plan, inbox), and records the purge.
-- SECURITY DEFINER: a deployment may grant EXECUTE on it to an operator role that has no
-- DELETE privilege on audit_events at all.
CREATE FUNCTION purge_audit_sessions(cutoff timestamptz, retention_years integer,
                                     requested_by text, max_sessions integer)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    purge_id bigint;
    expired text[];
    deleted_events integer;
BEGIN
    IF retention_years < 6 OR cutoff > now() - make_interval(years => retention_years) THEN
        RAISE EXCEPTION 'purge cutoff % is younger than the retention period of % years',
            cutoff, retention_years USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT coalesce(array_agg(s.session_id ORDER BY s.session_id), '{}') INTO expired FROM (
        SELECT a.session_id FROM audit_events a
        GROUP BY a.session_id
        HAVING max(a.occurred_at) < cutoff AND max(a.recorded_at) < cutoff
           AND bool_or(a.event_type = 'closed')
        ORDER BY a.session_id
        LIMIT max_sessions
    ) s;
    PERFORM set_config('msr.audit_purge', 'on', true);
    DELETE FROM audit_events WHERE session_id = ANY (expired);
    GET DIAGNOSTICS deleted_events = ROW_COUNT;
    PERFORM set_config('msr.audit_purge', 'off', true);
    DELETE FROM attendance WHERE session_id = ANY (expired);
    DELETE FROM follow_up_plans WHERE session_id = ANY (expired);
    DELETE FROM therapist_inbox WHERE session_id = ANY (expired);
    INSERT INTO audit_purges (cutoff, retention_years, requested_by, sessions, events,
                              session_ids)
    VALUES (cutoff, retention_years, requested_by, cardinality(expired), deleted_events,
            expired)
    RETURNING id INTO purge_id;
    RETURN purge_id;
END;
$$;
