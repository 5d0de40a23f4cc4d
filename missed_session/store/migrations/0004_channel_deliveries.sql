-- What the external channels (webhook, Twilio, SMTP) were asked to deliver, by idempotency
-- key. A step is claimed ('pending') before the provider is called and settled ('done')
-- after; a retry that finds it still pending knows a worker died mid-delivery.
CREATE TABLE channel_deliveries (
    idempotency_key text        PRIMARY KEY,
    state           text        NOT NULL CHECK (state IN ('pending', 'done')),
    result          text,
    claimed_at      timestamptz NOT NULL DEFAULT now(),
    settled_at      timestamptz
);
