-- Least privilege (issue 12): the engine and the API run as a role that owns nothing. Making
-- and dropping day partitions needs ownership of telemetry and events, and an owner may also
-- DROP, ALTER or TRUNCATE them; so the engine gets these two SECURITY DEFINER functions
-- instead, owned by the schema owner (the role that runs migrations). They take only a parent
-- the engine partitions and a day, build the name themselves (telemetry_pYYYYMMDD), give the
-- partition exactly the parent's privileges, and never drop one that may hold recent data
-- (each returns false when it did nothing).
-- EXECUTE is revoked from PUBLIC here; store/roles.py grants it to the app role.

CREATE FUNCTION firesentry_create_partition(parent text, day date) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    child text := parent || '_p' || to_char(day, 'YYYYMMDD');
    -- ISO literals in UTC: the same bounds store/partitions.py used, whatever DateStyle says.
    lo text := to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00';
    hi text := to_char(day + 1, 'YYYY-MM-DD') || ' 00:00:00+00';
    acl record;
BEGIN
    IF parent IS NULL OR parent NOT IN ('telemetry', 'events') OR day IS NULL THEN
        RAISE EXCEPTION 'firesentry_create_partition: % is not a partitioned time series', parent
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF to_regclass(format('public.%I', child)) IS NOT NULL THEN
        RETURN false;
    END IF;
    BEGIN
        EXECUTE format(
            'CREATE TABLE public.%I PARTITION OF public.%I FOR VALUES FROM (%L) TO (%L)',
            child, parent, lo, hi);
    EXCEPTION WHEN duplicate_table OR unique_violation THEN
        RETURN false;  -- another worker made it meanwhile
    END;
    -- Default privileges of the owner would apply to the new table: reset them to the
    -- parent's, so a role that may only INSERT into telemetry may only INSERT here too.
    FOR acl IN
        SELECT DISTINCT a.grantee FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.oid = format('public.%I', child)::regclass AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('REVOKE ALL ON public.%I FROM %s', child,
            CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE acl.grantee::regrole::text END);
    END LOOP;
    FOR acl IN
        SELECT a.grantee, a.privilege_type FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.oid = format('public.%I', parent)::regclass AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON public.%I TO %s', acl.privilege_type, child,
            CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE acl.grantee::regrole::text END);
    END LOOP;
    RETURN true;
END
$$;

CREATE FUNCTION firesentry_drop_partition(parent text, day date) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    child text := parent || '_p' || to_char(day, 'YYYYMMDD');
BEGIN
    IF parent IS NULL OR parent NOT IN ('telemetry', 'events') OR day IS NULL THEN
        RAISE EXCEPTION 'firesentry_drop_partition: % is not a partitioned time series', parent
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Retention keeps at least a day (storage.retention_days >= 1): yesterday and later stay,
    -- whatever the caller asks (false: kept; the engine tries again at its next maintenance).
    IF day >= (now() AT TIME ZONE 'UTC')::date - 1 OR NOT EXISTS (
        SELECT 1 FROM pg_inherits
        WHERE inhrelid = to_regclass(format('public.%I', child))
          AND inhparent = format('public.%I', parent)::regclass
    ) THEN
        RETURN false;
    END IF;
    EXECUTE format('DROP TABLE public.%I', child);
    RETURN true;
END
$$;

REVOKE EXECUTE ON FUNCTION firesentry_create_partition(text, date) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION firesentry_drop_partition(text, date) FROM PUBLIC;
