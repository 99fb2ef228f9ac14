-- Native PostgreSQL: telemetry and events are range partitions by day; the engine creates
-- partitions ahead of time and for late readings, and drops those past retention.

CREATE TABLE telemetry (
    ts          timestamptz NOT NULL,
    device_num  integer NOT NULL,
    metric_id   smallint NOT NULL,
    value       double precision NOT NULL,
    -- The dedup key: a redelivered reading hits this and is not stored twice.
    PRIMARY KEY (device_num, metric_id, ts)
) PARTITION BY RANGE (ts);

CREATE TABLE events (
    ts          timestamptz NOT NULL,
    device_num  integer NOT NULL,
    seq         bigint NOT NULL,
    kind        smallint NOT NULL,
    loop_no     integer,
    point_no    integer,
    text        text NOT NULL DEFAULT '',
    PRIMARY KEY (device_num, ts, seq)
) PARTITION BY RANGE (ts);
