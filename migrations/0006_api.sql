-- The HTTP API: bearer tokens (only their SHA-256 is stored) and the alert change feed behind
-- GET /api/v1/stream.

CREATE TABLE api_tokens (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    role          text NOT NULL CHECK (role IN ('operator', 'analyst', 'admin')),
    -- The units the token may see; empty: every unit.
    units         text[] NOT NULL DEFAULT '{}',
    token_sha256  bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    -- The first characters of the token, so that `tokens list` can tell tokens apart.
    hint          text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);

-- alert_events.id is taken when a row is inserted, but transactions commit in another order:
-- a reader that followed `id > last` could step over a row that commits later with a smaller
-- id. stream_seq numbers the rows at commit instead (a deferred trigger, serialised by a
-- transaction-level advisory lock held until the commit is visible), so a client that resumes
-- after the last stream_seq it saw misses nothing. The trigger also wakes LISTENers.
ALTER TABLE alert_events ADD COLUMN stream_seq bigint;
CREATE UNIQUE INDEX alert_events_stream ON alert_events (stream_seq);
CREATE SEQUENCE alert_events_stream_seq;

CREATE FUNCTION alert_events_number() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1718186597, 6);  -- ('fire', 6): this feed only
    UPDATE alert_events SET stream_seq = nextval('alert_events_stream_seq') WHERE id = NEW.id;
    PERFORM pg_notify('firesentry_alert_events', '');
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER alert_events_number AFTER INSERT ON alert_events
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION alert_events_number();

-- Rows written before this migration keep their order.
UPDATE alert_events SET stream_seq = id;
SELECT setval('alert_events_stream_seq', greatest(1, (SELECT max(id) FROM alert_events)),
              (SELECT max(id) FROM alert_events) IS NOT NULL);

-- Alert lists filtered by time and keyset-paginated (opened_at DESC, id DESC).
CREATE INDEX alerts_opened ON alerts (opened_at DESC, id DESC);
