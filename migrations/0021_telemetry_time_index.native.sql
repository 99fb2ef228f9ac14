-- Native partitions never had an index on ts alone (see the TimescaleDB variant): nothing to do.
SELECT 1;
