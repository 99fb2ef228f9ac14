-- A fourth token role: display, for the control room's wall screens. It reads the board and
-- the live stream and nothing else (no actions, no contacts' numbers), so that a token kept in
-- a screen's browser for months, which anyone in the room can reach, gives away little.
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('operator', 'analyst', 'admin', 'display'));
