-- Failover by person: a notification to a contact that keeps failing, or is refused, is sent
-- again on the contact's next channel (SMS, then e-mail, or the contact's own order). Every
-- row of such a chain names its first row in failover_of; failed_over_at is when a row was
-- handed on (or, with no channel left, when the control room was told the person cannot be
-- reached). Whichever row of a chain is sent first cancels the others.
ALTER TABLE notifications
    ADD COLUMN failover_of bigint,
    ADD COLUMN failed_over_at timestamptz;
CREATE INDEX notifications_failover ON notifications (failover_of) WHERE failover_of IS NOT NULL;
CREATE INDEX notifications_failover_due ON notifications (id)
    WHERE contact_id IS NOT NULL AND failed_over_at IS NULL AND state IN ('failed', 'given_up');
-- What gave up before failover existed stays as it was: it is not sent again by itself.
UPDATE notifications SET failed_over_at = now() WHERE state = 'given_up';
