-- Device ids are MQTT usernames, and the broker binds client ids to usernames: a device must
-- not be able to hold the name of one of the engine's own accounts (devices/records.py has the
-- same rule, with a message). NOT VALID: a fleet registered before keeps working until renamed.
ALTER TABLE devices ADD CONSTRAINT devices_id_not_reserved CHECK (
    lower(id) <> 'ingest' AND lower(id) NOT LIKE 'ingest-%' AND lower(id) NOT LIKE 'ingest\_%'
    AND lower(id) NOT LIKE 'firesentry%'
) NOT VALID;
