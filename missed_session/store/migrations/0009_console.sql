-- The clinician console (issue 16). Numbered 0008 on this branch; 0010 at merge into main (the lead
-- renumbers; versions must stay contiguous on every branch).
--
-- Console accounts: a roster clinician (or a compliance reviewer, who is not on the roster)
-- with an argon2 password hash. The role a clinician acts in comes from the roster in force,
-- never from this table; `compliance_reviewer` marks the accounts that may read and decide
-- nothing.
CREATE TABLE console_accounts (
    clinician_id  text        PRIMARY KEY,
    kind          text        NOT NULL CHECK (kind IN ('clinician', 'compliance_reviewer')),
    password_hash text        NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Signed-in browser sessions, by the SHA-256 of the cookie's token (never the token), with
-- the CSRF token every form of that session must carry. A row past `expires_at` signs
-- nobody in; signing out deletes it.
CREATE TABLE console_sessions (
    token_hash   text        PRIMARY KEY,
    clinician_id text        NOT NULL REFERENCES console_accounts ON DELETE CASCADE,
    csrf_token   text        NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

-- Who viewed which client's data, when (the access log a HIPAA reviewer asks for), and who
-- was refused. Append-only, like the audit trail.
CREATE TABLE console_access_log (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    viewed_at    timestamptz NOT NULL DEFAULT now(),
    clinician_id text        NOT NULL,
    page         text        NOT NULL,
    session_id   text,
    allowed      boolean     NOT NULL
);
CREATE INDEX console_access_log_session ON console_access_log (session_id, viewed_at);

CREATE TRIGGER console_access_log_append_only
    BEFORE UPDATE OR DELETE ON console_access_log
    FOR EACH ROW EXECUTE FUNCTION refuse_audit_change();
