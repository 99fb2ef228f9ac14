-- Registry import and liveness: the unit categories the importer accepts, and one view that
-- decides whether a device is online, so that every reader (CLI, API) agrees.

ALTER TABLE units ADD CONSTRAINT units_category CHECK (category IN (
    'small_venue', 'high_rise', 'school', 'hospital', 'factory', 'warehouse', 'residential',
    'public_venue', 'other'));

-- Offline when the device's status topic says so (its will message), or when nothing was heard
-- for 3 heartbeats; unknown when it was never heard from. An `online` status message counts as
-- being heard from at status_at.
CREATE VIEW device_liveness AS
SELECT d.num, d.id, d.unit_id, u.name AS unit_name, d.type, d.model, d.location, d.attributes,
       d.heartbeat_s, d.last_seen, d.status AS reported_status, d.status_at,
       d.password_hash IS NOT NULL AS has_password, d.created_at,
       CASE
           WHEN d.status = 'offline' THEN 'offline'
           WHEN h.heard IS NULL THEN 'unknown'
           WHEN h.heard < now() - make_interval(secs => 3 * d.heartbeat_s) THEN 'offline'
           ELSE 'online'
       END AS status
FROM devices d
JOIN units u ON u.id = d.unit_id
CROSS JOIN LATERAL (
    SELECT greatest(d.last_seen, CASE WHEN d.status = 'online' THEN d.status_at END) AS heard
) h;
