-- A hazard's people are reminded once before its deadline (hazard_policy remind_before_h):
-- when, so that a restart or a second engine does not remind them again.
ALTER TABLE hazards ADD COLUMN reminded_at timestamptz;
