-- Alerting: routing and escalation state on alerts, fire-alarm verification, silences,
-- quiet hours per contact, and outbox rows addressed to contacts and grouped per party.

ALTER TABLE alerts
    ADD COLUMN needs_verification boolean NOT NULL DEFAULT false,
    ADD COLUMN false_alarm_cause text
        CHECK (false_alarm_cause IN ('test', 'dust_steam', 'equipment_fault', 'malicious', 'unknown')),
    ADD COLUMN route text,
    ADD COLUMN escalation_tier integer NOT NULL DEFAULT 0,
    ADD COLUMN next_escalation_at timestamptz,
    ADD COLUMN reminders_sent integer NOT NULL DEFAULT 0,
    ADD COLUMN silenced_by bigint,
    ADD COLUMN resolved_by text,
    ADD CONSTRAINT alerts_verification CHECK (verification IN ('confirmed_fire', 'false_alarm'));
CREATE INDEX alerts_escalation_due ON alerts (next_escalation_at)
    WHERE next_escalation_at IS NOT NULL;

CREATE TABLE silences (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    unit_id     text REFERENCES units (id),
    device_id   text REFERENCES devices (id),
    rule_id     text,
    starts_at   timestamptz NOT NULL DEFAULT now(),
    ends_at     timestamptz NOT NULL,
    author      text NOT NULL,
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- A silence names at least one of unit, device, rule; all that it names must match.
    CHECK (unit_id IS NOT NULL OR device_id IS NOT NULL OR rule_id IS NOT NULL),
    CHECK (ends_at > starts_at)
);
CREATE INDEX silences_active ON silences (ends_at);

ALTER TABLE contacts
    ADD COLUMN quiet_start time,
    ADD COLUMN quiet_end time;

ALTER TABLE notifications
    ADD COLUMN kind text NOT NULL DEFAULT 'firing',
    ADD COLUMN contact_id bigint REFERENCES contacts (id),
    ADD COLUMN locale text NOT NULL DEFAULT 'zh-CN',
    -- Rows with the same group key (party + channel) that are due together go out as one message.
    ADD COLUMN group_key text,
    ADD COLUMN delivered_with bigint,
    DROP CONSTRAINT notifications_state_check,
    ADD CONSTRAINT notifications_state_check
        CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'given_up', 'cancelled'));
CREATE INDEX notifications_group ON notifications (group_key, state) WHERE group_key IS NOT NULL;
CREATE INDEX notifications_alert ON notifications (alert_id);

-- False alarms per device and per unit feed risk grading.
CREATE VIEW false_alarm_counts AS
SELECT a.unit_id, d.id AS device_id, a.false_alarm_cause AS cause, count(*) AS false_alarms,
       min(a.closed_at) AS first_at, max(a.closed_at) AS last_at
FROM alerts a JOIN devices d ON d.num = a.device_num
WHERE a.verification = 'false_alarm'
GROUP BY a.unit_id, d.id, a.false_alarm_cause;
