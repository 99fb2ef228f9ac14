-- Four-colour risk grades (issue 17): each unit's current grade with its score and reasons, and
-- every change of grade (an audit trail: the app role may only append to it). Both go with
-- their unit: grades are derived from its alerts, and a unit with alerts cannot be deleted.

CREATE TABLE unit_grades (
    unit_id        text PRIMARY KEY REFERENCES units (id) ON DELETE CASCADE,
    grade          text NOT NULL CHECK (grade IN ('blue', 'yellow', 'orange', 'red')),
    score          double precision NOT NULL,
    -- [{"factor", "value", "points", "en", "zh-CN"}], biggest first
    reasons        jsonb NOT NULL,
    model_version  text NOT NULL,
    since          timestamptz NOT NULL,   -- when the unit got this grade
    computed_at    timestamptz NOT NULL
);

CREATE TABLE unit_grade_changes (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    unit_id        text NOT NULL REFERENCES units (id) ON DELETE CASCADE,
    at             timestamptz NOT NULL,
    from_grade     text CHECK (from_grade IN ('blue', 'yellow', 'orange', 'red')),
    to_grade       text NOT NULL CHECK (to_grade IN ('blue', 'yellow', 'orange', 'red')),
    score          double precision NOT NULL,
    reasons        jsonb NOT NULL,
    model_version  text NOT NULL,
    trigger        text NOT NULL           -- 'schedule', or 'request:<who asked>'
);
CREATE INDEX unit_grade_changes_unit ON unit_grade_changes (unit_id, at DESC);

-- The grader reads alerts that overlap its window per unit.
CREATE INDEX alerts_unit_opened ON alerts (unit_id, opened_at);
