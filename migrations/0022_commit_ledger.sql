-- Which transaction a writer committed last. When the connection dies while COMMIT is on its
-- way, the writer cannot tell whether its batch went in; writing it again would re-plan its
-- alerts from rule state that already moved (a second 'refired', everyone notified twice).
-- Each writing lane (a random id per engine connection role) updates its row first thing in
-- each tracked transaction, with a fresh mark; afterwards the mark is in the row exactly when
-- the transaction committed. (pg_xact_status cannot say: after a crash PostgreSQL hands out
-- again transaction ids whose WAL never reached the disk.)
CREATE TABLE commit_ledger (
    writer uuid PRIMARY KEY,
    mark   uuid,
    at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE commit_ledger IS
    'One row per ingest writing lane: the mark of its last committed tracked transaction';
COMMENT ON COLUMN commit_ledger.writer IS 'random id of the lane, new at every engine start';
COMMENT ON COLUMN commit_ledger.mark IS 'random id of the last transaction the lane committed';
COMMENT ON COLUMN commit_ledger.at IS 'when that transaction ran (rows of old lanes are removed)';
