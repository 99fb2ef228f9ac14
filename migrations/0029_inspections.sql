-- Inspections against the unit's code (扫码检查, issue 17): an inspector or grid worker at a
-- shop scans its QR sticker, goes through the checklist (supervision/inspection_checklist.yaml)
-- and records the result; each failed item becomes a hazard of the loop in the same
-- transaction. `scanned` says the inspection was started from the unit's own code (the code on
-- its door), which is what a supervisor asks when checking that the inspector was there.
CREATE TABLE inspections (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    unit_id            text NOT NULL REFERENCES units (id) ON DELETE CASCADE,
    inspector          text NOT NULL,               -- the token's name
    at                 timestamptz NOT NULL DEFAULT now(),
    scanned            boolean NOT NULL,
    checklist_version  text NOT NULL,
    -- [{item, ok, note}] in the checklist's order.
    results            jsonb NOT NULL CHECK (jsonb_typeof(results) = 'array'),
    failed             integer NOT NULL CHECK (failed >= 0),
    comment            text NOT NULL DEFAULT '' CHECK (length(comment) <= 2000),
    hazard_ids         bigint[] NOT NULL DEFAULT '{}',
    -- The phone's own id of this submission: a resend after a dropped link (4G in a basement)
    -- finds the first one instead of recording the inspection and its hazards twice.
    client_ref         text CHECK (length(client_ref) BETWEEN 8 AND 64)
);
CREATE INDEX inspections_unit ON inspections (unit_id, at DESC);
CREATE INDEX inspections_at ON inspections (at);
CREATE UNIQUE INDEX inspections_one_per_submission ON inspections (unit_id, client_ref)
    WHERE client_ref IS NOT NULL;
