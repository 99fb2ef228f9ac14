-- The control room's duty log (值班日志, issue 17): who is on duty from when to when, notes
-- during the shift, and the handover: the outgoing operator's note, to whom, and what was open
-- at that moment (alerts not closed, hazards not closed), kept as it was. Append and close
-- only: the app role may not delete a shift or a note.
CREATE TABLE duty_shifts (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    operator          text NOT NULL,
    started_at        timestamptz NOT NULL DEFAULT now(),
    ended_at          timestamptz,
    handover_note     text NOT NULL DEFAULT '' CHECK (length(handover_note) <= 4000),
    handed_to         text NOT NULL DEFAULT '',
    -- {"alerts": [{"id", "rule_id", "severity", "state", "unit_name"}], "alerts_total",
    --  "hazards_open", "hazards_overdue"}: what the next shift took over.
    open_at_handover  jsonb,
    CHECK ((ended_at IS NULL) = (open_at_handover IS NULL))
);
-- One open shift per operator: a second start says which shift is still open.
CREATE UNIQUE INDEX duty_shifts_one_open ON duty_shifts (operator) WHERE ended_at IS NULL;
CREATE INDEX duty_shifts_started ON duty_shifts (started_at DESC);

CREATE TABLE duty_notes (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    shift_id  bigint NOT NULL REFERENCES duty_shifts (id),
    at        timestamptz NOT NULL DEFAULT now(),
    author    text NOT NULL,
    text      text NOT NULL CHECK (length(text) BETWEEN 1 AND 4000)
);
CREATE INDEX duty_notes_shift ON duty_notes (shift_id, id);
