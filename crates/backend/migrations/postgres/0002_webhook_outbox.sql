-- The webhook outbox: one row per newly recorded upload, written in the transaction that
-- records it, delivered by the instances' webhook workers until the receiver answers 2xx.
-- A worker claims due rows with FOR UPDATE SKIP LOCKED and moves next_attempt_at past its
-- lease, so no two instances send the same row at once, and a crashed one's rows come due
-- again. record_id UNIQUE: one webhook per record.
CREATE TABLE webhook_outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    record_id       BIGINT NOT NULL UNIQUE REFERENCES records (id),
    idempotency_key TEXT NOT NULL,
    body            TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at    TIMESTAMPTZ,
    last_error      TEXT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE delivered_at IS NULL;
