-- Delivery receipts (SMS status callbacks): `sent` means a provider accepted a message;
-- `delivered` that the provider says it reached the phone. Receipts are kept as they came
-- (the audit trail of what each provider said) and applied by the outbox worker, which
-- decides by the retry policy what a receipt of failure means.
ALTER TABLE notifications
    DROP CONSTRAINT notifications_state_check,
    ADD CONSTRAINT notifications_state_check
        CHECK (state IN ('pending', 'sending', 'sent', 'delivered', 'failed', 'given_up',
                         'cancelled')),
    ADD COLUMN delivered_at timestamptz,
    ADD COLUMN receipt text;

CREATE TABLE delivery_receipts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at     timestamptz NOT NULL DEFAULT now(),
    provider        text NOT NULL,
    idempotency_key uuid NOT NULL,
    delivered       boolean NOT NULL,
    status          text NOT NULL,
    error           text NOT NULL DEFAULT '',
    applied_at      timestamptz,
    notification_id bigint
);
CREATE INDEX delivery_receipts_unapplied ON delivery_receipts (id) WHERE applied_at IS NULL;
CREATE INDEX delivery_receipts_notification ON delivery_receipts (notification_id);
