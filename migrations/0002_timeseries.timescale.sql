-- TimescaleDB: telemetry and events are hypertables with daily chunks and compression.

CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE telemetry (
    ts          timestamptz NOT NULL,
    device_num  integer NOT NULL,
    metric_id   smallint NOT NULL,
    value       double precision NOT NULL,
    PRIMARY KEY (device_num, metric_id, ts)
);
SELECT create_hypertable('telemetry', by_range('ts', INTERVAL '1 day'));
ALTER TABLE telemetry SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_num, metric_id',
    timescaledb.compress_orderby = 'ts'
);
SELECT add_compression_policy('telemetry', INTERVAL '7 days');

CREATE TABLE events (
    ts          timestamptz NOT NULL,
    device_num  integer NOT NULL,
    seq         bigint NOT NULL,
    kind        smallint NOT NULL,
    loop_no     integer,
    point_no    integer,
    text        text NOT NULL DEFAULT '',
    PRIMARY KEY (device_num, ts, seq)
);
SELECT create_hypertable('events', by_range('ts', INTERVAL '7 days'));
