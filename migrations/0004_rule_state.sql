-- Per-(rule, device) state of the rule engine, written in the same transaction as the alert
-- changes it causes, so a restart continues a half-way duration or an open hysteresis.
CREATE TABLE rule_state (
    rule_id     text NOT NULL,
    device_num  integer NOT NULL,
    raw         boolean NOT NULL,
    active      boolean NOT NULL,
    since_ms    bigint NOT NULL,
    last_ts_ms  bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rule_id, device_num)
);
