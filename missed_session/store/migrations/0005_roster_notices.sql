-- The roster (clinicians, on-call rota, leave) and the practice's notice rules, one row per
-- load: the roster in force at an instant is the latest row loaded before it, and earlier
-- rows stay, so a reviewer can read who was on call when a notice climbed. Append-only.
CREATE TABLE roster_versions (
    version   integer     GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    source    text        NOT NULL,
    digest    text        NOT NULL,
    roster    jsonb,
    notices   jsonb       NOT NULL
);

CREATE TRIGGER roster_versions_append_only
    BEFORE UPDATE OR DELETE ON roster_versions
    FOR EACH ROW EXECUTE FUNCTION refuse_audit_change();

-- One row per notice (alert or task) delivered by a notice workflow: where it stands, for
-- `starter.py notices list` and for matching an SMS reply to it. A projection of the notice's
-- own audit trail (the session id followed by `/<name>`), written by the notice workflow.
CREATE TABLE notices (
    key             text        PRIMARY KEY,
    session_id      text        NOT NULL,
    therapist_id    text        NOT NULL,
    kind            text        NOT NULL,
    priority        text        NOT NULL,
    risk_tier       text        NOT NULL,
    policy          text        NOT NULL,
    state           text        NOT NULL
        CHECK (state IN ('open', 'exhausted', 'acknowledged', 'resolved')),
    opened_at       timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    acknowledged_by text,
    acknowledged_via text,
    acknowledged_at timestamptz,
    resolved_by     text,
    resolved_at     timestamptz
);
CREATE INDEX notices_unfinished ON notices (opened_at) WHERE state IN ('open', 'exhausted');

-- The acknowledgment code sent to each notified clinician, by its SHA-256 (never the code).
CREATE TABLE notice_codes (
    notice_key   text        NOT NULL,
    clinician_id text        NOT NULL,
    code_hash    text        NOT NULL UNIQUE,
    issued_at    timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (notice_key, clinician_id)
);
CREATE INDEX notice_codes_clinician ON notice_codes (clinician_id, issued_at);

-- Acknowledgments and resolutions refused (unknown, expired or used code, a number that is
-- not the notified clinician's): recorded, and nothing else changes. Append-only. The sender
-- appears only as a clinician id when the roster knows the number, never as the number.
CREATE TABLE notice_refusals (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    refused_at   timestamptz NOT NULL DEFAULT now(),
    notice_key   text,
    via          text        NOT NULL,
    clinician_id text,
    reason       text        NOT NULL
);

CREATE TRIGGER notice_refusals_append_only
    BEFORE UPDATE OR DELETE ON notice_refusals
    FOR EACH ROW EXECUTE FUNCTION refuse_audit_change();
