-- The webhook outbox: one row per newly recorded upload, written in the transaction that
-- records it, delivered by the webhook worker until the receiver answers 2xx. Times are Unix
-- milliseconds, compared with the worker's clock. record_id UNIQUE: one webhook per record.
CREATE TABLE webhook_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id       INTEGER NOT NULL UNIQUE REFERENCES records (id),
    idempotency_key TEXT NOT NULL,
    body            TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER,
    last_error      TEXT
);
-- Only undelivered rows are ever looked for.
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE delivered_at IS NULL;
