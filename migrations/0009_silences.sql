-- Silences with a capped end, an end by hand (who, when, why) and whether they cover critical
-- alerts. The cap (90 days after creation, alerts.silences.MAX_SILENCE) is checked by the
-- application with a message naming the field, and here again so that no writer can pass it.

ALTER TABLE silences
    -- Decided at creation from the rule file: a unit-wide silence, a device whose type has a
    -- critical rule, or a critical rule. Such silences need an admin; they never mute the
    -- control room (the dispatcher decides by the alert's severity, whatever this says).
    ADD COLUMN covers_critical boolean NOT NULL DEFAULT true,
    ADD COLUMN ended_at timestamptz,
    ADD COLUMN ended_by text,
    ADD COLUMN end_comment text NOT NULL DEFAULT '',
    ADD CONSTRAINT silences_ended CHECK ((ended_at IS NULL) = (ended_by IS NULL));

-- Silences made before the cap (the audit found one until 9999-12-31) end 90 days after
-- they were made.
UPDATE silences
SET starts_at = least(starts_at, created_at + interval '90 days' - interval '1 second'),
    ends_at = created_at + interval '90 days'
WHERE ends_at > created_at + interval '90 days';

ALTER TABLE silences
    ADD CONSTRAINT silences_capped CHECK (ends_at <= created_at + interval '90 days');
