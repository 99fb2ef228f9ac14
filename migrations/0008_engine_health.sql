-- What each engine process says about its own workers, rewritten every ~2 s. /readyz and
-- /metrics are often served by another process (`firesentry api`), which can see the engine
-- only through the database; a row that stops changing is an engine that stopped (or lost
-- the database). Ages are measured with the database's clock on both sides, so the hosts'
-- clocks do not matter.
CREATE TABLE engine_health (
    -- The MQTT client id: one ingest worker, one row (a restarted worker takes its row over).
    client_id           text PRIMARY KEY,
    host                text NOT NULL,
    pid                 integer NOT NULL,
    started_at          timestamptz NOT NULL,
    broker_connected    boolean NOT NULL,
    ingest_alive        boolean NOT NULL,
    outbox_alive        boolean NOT NULL,
    -- Age of the oldest message received but not yet committed.
    ingest_lag_s        double precision NOT NULL,
    committed_messages  bigint NOT NULL,
    last_batch_at       timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
