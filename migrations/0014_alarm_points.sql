-- Alarm identity per detector: a user information transmission device reports each alarming
-- point (loop, point, the panel's text) and each point is its own alert. point_key is
-- '<loop>-<point>' for such alarms and '' for conditions of the whole device (a reading, a
-- power fault, silence): one open alert per (device, rule, point) instead of per (device, rule).
ALTER TABLE alerts
    ADD COLUMN point_key  text NOT NULL DEFAULT '',
    ADD COLUMN loop       integer,
    ADD COLUMN point      integer,
    ADD COLUMN point_text text NOT NULL DEFAULT '';
DROP INDEX alerts_one_open;
CREATE UNIQUE INDEX alerts_one_open ON alerts (device_num, rule_id, point_key)
    WHERE state <> 'closed';

-- Messages name the device's location and the unit's address: the registry the engine keeps
-- in memory now holds both, so changing them must count as a registry change (0013).
DROP TRIGGER devices_registry_changed ON devices;
CREATE TRIGGER devices_registry_changed
    AFTER INSERT OR DELETE OR TRUNCATE
    OR UPDATE OF id, unit_id, type, attributes, heartbeat_s, location
    ON devices FOR EACH STATEMENT EXECUTE FUNCTION registry_changed();
DROP TRIGGER units_registry_changed ON units;
CREATE TRIGGER units_registry_changed
    AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF id, name, district, address
    ON units FOR EACH STATEMENT EXECUTE FUNCTION registry_changed();
