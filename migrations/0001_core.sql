-- Registry, alerts, outbox and dead letters: the tables that are the same on every back end.

CREATE TABLE units (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    name        text NOT NULL,
    address     text NOT NULL DEFAULT '',
    district    text NOT NULL DEFAULT '',
    grid        text NOT NULL DEFAULT '',
    lat         double precision CHECK (lat BETWEEN -90 AND 90),
    lon         double precision CHECK (lon BETWEEN -180 AND 180),
    category    text NOT NULL DEFAULT 'small_venue',
    qr_token    text NOT NULL UNIQUE DEFAULT replace(gen_random_uuid()::text, '-', ''),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    -- num is the dense internal number used in telemetry rows and rule-state arrays.
    num           integer GENERATED ALWAYS AS IDENTITY UNIQUE,
    id            text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    unit_id       text NOT NULL REFERENCES units (id),
    type          text NOT NULL CHECK (type IN ('user_transmission_device', 'electrical_monitor',
                                                'water_level', 'water_pressure')),
    model         text NOT NULL DEFAULT '',
    location      text NOT NULL DEFAULT '',
    attributes    jsonb NOT NULL DEFAULT '{}'::jsonb,
    password_hash text,
    heartbeat_s   integer NOT NULL DEFAULT 60 CHECK (heartbeat_s > 0),
    last_seen     timestamptz,
    status        text NOT NULL DEFAULT 'unknown' CHECK (status IN ('unknown', 'online', 'offline')),
    status_at     timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_unit ON devices (unit_id);

CREATE TABLE contacts (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    unit_id   text REFERENCES units (id),
    district  text,
    name      text NOT NULL,
    role      text NOT NULL CHECK (role IN ('fire_safety_manager', 'property_manager', 'grid_worker',
                                            'fire_supervisor', 'control_room')),
    phone     text,
    email     text,
    locale    text NOT NULL DEFAULT 'zh-CN' CHECK (locale IN ('zh-CN', 'en')),
    channels  text[] NOT NULL DEFAULT '{}',
    -- A contact covers one unit, or every unit of a district (supervisors, control rooms).
    CHECK (unit_id IS NOT NULL OR district IS NOT NULL)
);
CREATE INDEX contacts_unit ON contacts (unit_id);

CREATE TABLE metrics (
    id    smallint PRIMARY KEY,
    name  text NOT NULL UNIQUE,
    unit  text NOT NULL
);

CREATE TABLE rejected_messages (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    topic        text NOT NULL,
    device_id    text,
    reason       text NOT NULL,
    detail       text NOT NULL DEFAULT '',
    payload      bytea NOT NULL
);
CREATE INDEX rejected_messages_time ON rejected_messages (received_at);
CREATE INDEX rejected_messages_reason ON rejected_messages (reason, received_at);

CREATE TABLE alerts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_num       integer NOT NULL REFERENCES devices (num),
    unit_id          text NOT NULL REFERENCES units (id),
    rule_id          text NOT NULL,
    severity         text NOT NULL CHECK (severity IN ('critical', 'major', 'warning', 'info')),
    state            text NOT NULL DEFAULT 'firing'
                     CHECK (state IN ('firing', 'acknowledged', 'resolved', 'closed')),
    metric           text,
    threshold        double precision,
    first_value      double precision,
    last_value       double precision,
    opened_at        timestamptz NOT NULL,
    last_seen_at     timestamptz NOT NULL,
    count            integer NOT NULL DEFAULT 1,
    cleared_at       timestamptz,
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    closed_at        timestamptz,
    closed_by        text,
    verification     text,
    message_en       text NOT NULL DEFAULT '',
    message_zh       text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
-- One open alert per (device, rule): repeats update it instead of opening another.
CREATE UNIQUE INDEX alerts_one_open ON alerts (device_num, rule_id) WHERE state <> 'closed';
CREATE INDEX alerts_unit_state ON alerts (unit_id, state);

CREATE TABLE alert_events (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id  bigint NOT NULL REFERENCES alerts (id),
    at        timestamptz NOT NULL DEFAULT now(),
    kind      text NOT NULL,
    actor     text NOT NULL DEFAULT 'engine',
    value     double precision,
    comment   text NOT NULL DEFAULT ''
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, at);

-- The transactional outbox: written with the alert change, delivered by the notify worker.
CREATE TABLE notifications (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id         bigint REFERENCES alerts (id),
    channel          text NOT NULL,
    receiver         text NOT NULL,
    idempotency_key  uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    payload          jsonb NOT NULL,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'given_up')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_until      timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz
);
CREATE INDEX notifications_due ON notifications (next_attempt_at)
    WHERE state IN ('pending', 'sending', 'failed');
