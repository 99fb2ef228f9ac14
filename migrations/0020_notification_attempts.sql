-- Every delivery attempt of a notification, as it ended: sent, failed (with the error and
-- when the next try falls due), given up or cancelled. `notify show ID` reads them; the row
-- itself keeps only the last error.
CREATE TABLE notification_attempts (
    notification_id bigint NOT NULL,
    attempt         integer NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    outcome         text NOT NULL,
    error           text
);
CREATE INDEX notification_attempts_notification ON notification_attempts (notification_id, at);
