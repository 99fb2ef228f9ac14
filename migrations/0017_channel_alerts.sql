-- A notification channel that keeps failing is an alert of its own: the control room hears
-- of it through the channels that work. first_failed_at is when a waiting notification first
-- failed (cleared when it is sent), so "failing since" survives restarts of the engine.
ALTER TABLE notifications ADD COLUMN first_failed_at timestamptz;

CREATE TABLE channel_alerts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- 'sms' or 'email' (a provider failing fails every number), else '<channel>:<receiver>'.
    subject       text NOT NULL,
    failing_since timestamptz NOT NULL,
    opened_at     timestamptz NOT NULL DEFAULT now(),
    cleared_at    timestamptz,
    waiting       integer NOT NULL DEFAULT 0,
    last_error    text NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX channel_alerts_one_open ON channel_alerts (subject) WHERE cleared_at IS NULL;
