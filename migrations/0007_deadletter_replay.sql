-- Dead-letter replay: `firesentry deadletters replay` marks rows requested, the running engine
-- claims them between batches and feeds them through ingest again; a message rejected again
-- becomes a new row pointing back at its original (replay_of).

ALTER TABLE rejected_messages
    -- Only part of the payload was kept (an oversize message): it cannot be replayed faithfully.
    ADD COLUMN payload_truncated     boolean NOT NULL DEFAULT false,
    ADD COLUMN replay_requested_at   timestamptz,
    ADD COLUMN replay_requested_by   text,
    -- A claim's lease: another worker (or the next start after a crash) takes the row only after.
    ADD COLUMN replay_claimed_until  timestamptz,
    -- Set in the transaction that stored the replayed message's data (or its new rejection).
    ADD COLUMN replayed_at           timestamptz,
    ADD COLUMN replay_of             bigint REFERENCES rejected_messages (id) ON DELETE SET NULL;

-- Before this migration ingest kept the first 2048 bytes of every payload, so a payload of that
-- length may have been cut: it is not offered for replay.
UPDATE rejected_messages SET payload_truncated = true WHERE octet_length(payload) = 2048;

-- The engine's claim query, run between batches: small because the queue is usually empty.
CREATE INDEX rejected_messages_replay_queue ON rejected_messages (id)
    WHERE replay_requested_at IS NOT NULL AND replayed_at IS NULL;
CREATE INDEX rejected_messages_replay_of ON rejected_messages (replay_of)
    WHERE replay_of IS NOT NULL;
