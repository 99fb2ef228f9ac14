-- Least privilege (issue 12): the engine and the API run as a role that owns nothing.
-- TimescaleDB makes and drops chunks itself (as the hypertable's owner), but setting the
-- retention policy at engine start (store/partitions.py) needs ownership of the hypertables;
-- so the engine gets this SECURITY DEFINER function instead, owned by the schema owner (the
-- role that runs migrations), which is also the owner of the jobs it adds. It only sets the
-- number of days kept, at least one. EXECUTE is revoked from PUBLIC here; store/roles.py
-- grants it to the app role.

CREATE FUNCTION firesentry_set_retention(keep_days integer) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog, pg_temp AS $$
DECLARE
    t regclass;
BEGIN
    IF keep_days IS NULL OR keep_days < 1 THEN
        RAISE EXCEPTION 'firesentry_set_retention: keep at least one day, not %', keep_days
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH t IN ARRAY ARRAY['public.telemetry'::regclass, 'public.events'::regclass] LOOP
        PERFORM remove_retention_policy(t, if_exists => true);
        PERFORM add_retention_policy(t, make_interval(days => keep_days));
    END LOOP;
END
$$;

REVOKE EXECUTE ON FUNCTION firesentry_set_retention(integer) FROM PUBLIC;
