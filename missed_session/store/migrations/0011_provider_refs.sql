-- The provider's own id for a delivery (a Twilio Call or Message SID), kept as soon as the
-- provider answers the create request: a retry that finds the step pending with an id
-- resumes watching that call instead of declaring the delivery uncertain, and never places
-- it again. A pending step without one stays uncertain (the request may or may not have
-- reached the provider).
ALTER TABLE channel_deliveries ADD COLUMN provider_ref text;
CREATE UNIQUE INDEX channel_deliveries_provider_ref ON channel_deliveries (provider_ref)
    WHERE provider_ref IS NOT NULL;

-- What the provider's status callbacks reported for a call (Twilio's StatusCallback), by the
-- provider's id: the step waiting on the call reads it and falls back to polling. Only the
-- call's status and answering-machine verdict are kept: no numbers.
CREATE TABLE provider_reports (
    provider_ref text        PRIMARY KEY,
    status       text        NOT NULL,
    answered_by  text,
    reported_at  timestamptz NOT NULL DEFAULT now()
);
