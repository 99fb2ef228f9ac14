-- The hazard closed loop (隐患闭环, issue 17): a hazard found at a unit by a person (a grid
-- worker, an inspector) or by the data (a fault open too long, a tank low for hours, false
-- alarms beyond 5 a day, a device offline for days) is followed through
-- found → notified (督促) → rectifying (跟踪) → submitted → reviewed → closed (销案); one past
-- its deadline is overdue and escalated to the district's fire supervisor. Every step is a
-- hazard_events row with who, when and its evidence (an audit trail: append only).

CREATE TABLE hazards (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    unit_id         text NOT NULL REFERENCES units (id) ON DELETE CASCADE,
    device_id       text,                     -- the device it concerns, if any
    category        text NOT NULL CHECK (category IN (
                        'blocked_exit', 'fire_equipment', 'electrical', 'fire_water',
                        'alarm_system', 'storage', 'other')),
    severity        text NOT NULL CHECK (severity IN ('major', 'general')),
    description     text NOT NULL CHECK (length(description) BETWEEN 1 AND 2000),
    source          text NOT NULL CHECK (source IN ('person', 'data')),
    -- A hazard found by the data: its rule, and what it was found on (one open hazard each).
    rule_id         text,
    dedup_key       text,
    found_by        text NOT NULL,
    found_at        timestamptz NOT NULL DEFAULT now(),
    responsible     text NOT NULL DEFAULT '',  -- who rectifies it (a name, as told)
    deadline        timestamptz NOT NULL,
    state           text NOT NULL DEFAULT 'found' CHECK (state IN (
                        'found', 'notified', 'rectifying', 'submitted', 'reviewed', 'closed')),
    overdue_at      timestamptz,               -- when it was found past its deadline (escalated)
    closed_at       timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((source = 'data') = (rule_id IS NOT NULL AND dedup_key IS NOT NULL)),
    CHECK ((state = 'closed') = (closed_at IS NOT NULL))
);
CREATE INDEX hazards_unit ON hazards (unit_id, found_at DESC);
CREATE INDEX hazards_open_deadline ON hazards (deadline) WHERE state <> 'closed';
CREATE UNIQUE INDEX hazards_one_open_per_finding ON hazards (dedup_key) WHERE state <> 'closed';

CREATE TABLE hazard_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hazard_id   bigint NOT NULL REFERENCES hazards (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL,      -- found, notified, rectifying, submitted, reviewed, rejected,
                                    -- closed, overdue, photo
    actor       text NOT NULL,
    comment     text NOT NULL DEFAULT '',
    photo_ids   bigint[] NOT NULL DEFAULT '{}'
);
CREATE INDEX hazard_events_hazard ON hazard_events (hazard_id, id);

-- Photos are evidence: kept with their hazard, small (the API refuses more than 5 MB).
CREATE TABLE hazard_photos (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hazard_id     bigint NOT NULL REFERENCES hazards (id) ON DELETE CASCADE,
    content_type  text NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png', 'image/webp')),
    data          bytea NOT NULL,
    sha256        text NOT NULL,
    uploaded_by   text NOT NULL,
    uploaded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX hazard_photos_hazard ON hazard_photos (hazard_id);

-- Two token roles for the loop: inspector (grid workers and inspectors in the field: read the
-- units they cover, report hazards, follow them) and supervisor (fire supervisors: also review
-- rectifications and close hazards, 销案).
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('operator', 'analyst', 'admin', 'display', 'inspector', 'supervisor'));
