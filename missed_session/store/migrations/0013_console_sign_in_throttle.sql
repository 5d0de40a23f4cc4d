-- Sign-in throttling (issue 24 item 5). Numbered 0018 on this branch (assigned); the lead
-- renumbers at merge so versions stay contiguous.
--
-- Failed console sign-ins, by the clinician id typed (known or not: the throttle must not
-- tell which ids exist) and the source address. A working table: a success clears the
-- account's rows, old rows are forgotten. The access log keeps the permanent record.
CREATE TABLE console_sign_in_failures (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    failed_at    timestamptz NOT NULL,
    clinician_id text        NOT NULL,
    source       text        NOT NULL
);
CREATE INDEX console_sign_in_failures_account ON console_sign_in_failures (clinician_id, failed_at);
CREATE INDEX console_sign_in_failures_source ON console_sign_in_failures (source, failed_at);

-- Where a sign-in attempt came from (the access log's other rows leave it empty).
ALTER TABLE console_access_log ADD COLUMN source text;

-- Which client's page was viewed (the client page has no session).
ALTER TABLE console_access_log ADD COLUMN client_ref text;
CREATE INDEX console_access_log_client ON console_access_log (client_ref, viewed_at)
    WHERE client_ref IS NOT NULL;

-- What the console's lists and measures look up in the trail: events of a type in a period
-- (today's no-shows, the measures), and a client's or a therapist's sessions.
CREATE INDEX audit_events_type_time ON audit_events (event_type, occurred_at);
CREATE INDEX audit_events_scheduled_client ON audit_events ((data->>'client_ref'))
    WHERE event_type = 'scheduled';
CREATE INDEX audit_events_scheduled_therapist ON audit_events ((data->>'therapist_id'))
    WHERE event_type = 'scheduled';
