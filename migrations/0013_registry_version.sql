-- The engine reloads its registry (devices with their units' names and districts) only when
-- it has changed: every statement that changes what it reads bumps this counter once.
-- Liveness writes (last_seen, status) touch none of the columns listed, so they do not count;
-- without this a 10,000-device engine re-read and re-indexed its whole registry every 10 s.
CREATE TABLE registry_version (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint NOT NULL DEFAULT 0
);
INSERT INTO registry_version DEFAULT VALUES;

CREATE FUNCTION registry_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE registry_version SET version = version + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER devices_registry_changed
    AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF id, unit_id, type, attributes, heartbeat_s
    ON devices FOR EACH STATEMENT EXECUTE FUNCTION registry_changed();
CREATE TRIGGER units_registry_changed
    AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF id, name, district
    ON units FOR EACH STATEMENT EXECUTE FUNCTION registry_changed();
