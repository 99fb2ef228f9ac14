-- create_hypertable adds an index on (ts DESC). The primary key (device_num, metric_id, ts)
-- already serves every query firesentry makes (a device's metric over a time range; chunks
-- are excluded by time first), and the extra index cost ~20 % of write speed and ~30 % more
-- disk (issue 16). Dropped on the hypertable, it is dropped on every chunk.
DROP INDEX IF EXISTS telemetry_ts_idx;
