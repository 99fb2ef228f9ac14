-- Operators resend notifications that were given up (`firesentry notify retry`): who did it
-- and when stay on the row, beside the error that made it give up.
ALTER TABLE notifications
    ADD COLUMN retried_by text,
    ADD COLUMN retried_at timestamptz;
CREATE INDEX notifications_state_created ON notifications (state, created_at);
