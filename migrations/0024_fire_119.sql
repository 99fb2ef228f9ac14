-- Forwarding confirmed fires to the 119 command centre (GB 50440; issue 17). An operator
-- verifies a fire alarm when the unit has been called, which may be long before the alert is
-- closed: the verification gets its own time and person. A fire alarm left unverified too long
-- is escalated once (unverified_escalated_at); the forwarding itself is a notification row of
-- channel 'fire_119', written in the verifying transaction.

ALTER TABLE alerts
    ADD COLUMN verified_at timestamptz,
    ADD COLUMN verified_by text,
    ADD COLUMN unverified_escalated_at timestamptz,
    ADD CONSTRAINT alerts_verified_with_who CHECK ((verified_at IS NULL) = (verified_by IS NULL)),
    ADD CONSTRAINT alerts_verified_with_what CHECK (verified_at IS NULL OR verification IS NOT NULL);

-- Alerts verified before this column existed were verified when they were closed.
UPDATE alerts SET verified_at = closed_at, verified_by = coalesce(closed_by, 'unknown')
WHERE verification IS NOT NULL AND closed_at IS NOT NULL;

-- The unverified-escalation pass reads open fire alarms not yet verified nor escalated.
CREATE INDEX alerts_unverified ON alerts (opened_at)
    WHERE needs_verification AND verification IS NULL AND unverified_escalated_at IS NULL
      AND state <> 'closed';
