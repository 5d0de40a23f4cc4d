-- The client directory: who each client is and how to reach them now (current state,
-- replaced as a whole on update, every change logged in client_changes), and their consent
-- history (consent_records: append-only like audit_events; a withdrawal is a new record).

CREATE TABLE clients (
    client_ref  text        PRIMARY KEY,
    first_name  text        NOT NULL,
    time_zone   text        NOT NULL,
    flags       text[]      NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Phone numbers and email addresses, in the order outreach tries them.
CREATE TABLE client_contact_points (
    client_ref  text    NOT NULL REFERENCES clients (client_ref) ON DELETE CASCADE,
    position    integer NOT NULL CHECK (position >= 0),
    kind        text    NOT NULL CHECK (kind IN ('phone', 'email')),
    value       text    NOT NULL,
    use         text    NOT NULL CHECK (use IN ('mobile', 'home', 'work')),
    verified    boolean NOT NULL DEFAULT false,
    PRIMARY KEY (client_ref, kind, position)
);

-- Opt-outs are keyed by number: which clients use a number.
CREATE INDEX client_contact_points_value ON client_contact_points (value);

CREATE TABLE client_emergency_contacts (
    client_ref   text    NOT NULL REFERENCES clients (client_ref) ON DELETE CASCADE,
    position     integer NOT NULL CHECK (position >= 0),
    name         text    NOT NULL,
    phone        text    NOT NULL,
    relationship text    NOT NULL DEFAULT '',
    PRIMARY KEY (client_ref, position)
);

-- What changed in the directory, when, by whom and from what (a booking, the CLI, an
-- import): names of the fields only, never their values.
CREATE TABLE client_changes (
    change_id   bigserial   PRIMARY KEY,
    client_ref  text        NOT NULL,
    action      text        NOT NULL CHECK (action IN ('created', 'updated')),
    fields      text[]      NOT NULL,
    source      text        NOT NULL,
    recorded_by text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE consent_records (
    record_seq    bigserial   PRIMARY KEY,
    client_ref    text,        -- NULL: every client using contact_point (STOP/START)
    subject       text        NOT NULL CHECK (subject IN
                                  ('call', 'voicemail', 'text', 'email', 'emergency_contact')),
    contact_point text,        -- NULL: every contact point of the client
    scope         text        CHECK (scope IN ('unreachable', 'safety_concern')),
    granted       boolean     NOT NULL,
    effective_at  timestamptz NOT NULL,
    source        text        NOT NULL CHECK (source IN ('intake_form', 'client_request',
                                  'stop_reply', 'start_reply', 'clinician', 'booking')),
    recorded_by   text        NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (client_ref IS NOT NULL OR contact_point IS NOT NULL)
);

CREATE INDEX consent_records_client ON consent_records (client_ref);
CREATE INDEX consent_records_contact_point ON consent_records (contact_point);

CREATE FUNCTION refuse_consent_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'consent_records is append-only: % refused (record a withdrawal instead)',
        TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER consent_records_append_only
    BEFORE UPDATE OR DELETE ON consent_records
    FOR EACH ROW EXECUTE FUNCTION refuse_consent_change();

CREATE TRIGGER consent_records_no_truncate
    BEFORE TRUNCATE ON consent_records
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_consent_change();

CREATE TRIGGER client_changes_append_only
    BEFORE UPDATE OR DELETE ON client_changes
    FOR EACH ROW EXECUTE FUNCTION refuse_consent_change();
