-- migrate: rerun after any change
--
-- Privileges of the worker role (created in migration 0011_worker_role.sql).
--
-- A worker reaches the database only through the functions listed in
-- mj_worker_function_names(). They run as SECURITY DEFINER, with the
-- privileges of their owner (the role that runs the migrations), and each
-- one checks the caller's worker id or the attempt's lease token itself.
-- minijenkin_worker has EXECUTE on those functions and no other privilege
-- (no table, sequence or view), so secrets, API tokens and other jobs' rows
-- stay out of reach.
--
-- CREATE OR REPLACE FUNCTION keeps owner and grants but resets SECURITY
-- DEFINER and SET search_path, and DROP plus CREATE loses the grants too.
-- The migrator therefore runs this file again whenever a migration or an
-- earlier function file was applied in the same pass (the header line above).

-- The functions a worker calls, by name (every overload of a name). To let
-- workers call a new function, add its name here.
CREATE OR REPLACE FUNCTION mj_worker_function_names() RETURNS text[]
    LANGUAGE sql IMMUTABLE
    AS $$
        SELECT ARRAY[
            'mj_deploy_acquire_v1',
            'mj_deploy_release_v1',
            'mj_job_ancestor_statuses_v1',
            'mj_job_claim_v1',
            'mj_job_claim_v2',
            'mj_job_finish_and_claim_v1',
            'mj_job_finish_many_v1',
            'mj_job_finish_v1',
            'mj_job_needs_outputs_v1',
            'mj_job_outputs_set_v1',
            'mj_job_secrets_v1',
            'mj_job_variables_v1',
            'mj_logs_flush_v1',
            'mj_plan_submit_v1',
            'mj_schedules_replace_v1',
            'mj_schedules_sync_wanted_v1',
            'mj_worker_heartbeat_v1',
            'mj_worker_register_v1',
            'mj_worker_stop_v1'
        ]
    $$;

DO $$
DECLARE
    v_schema text := current_schema();
    v_function regprocedure;
    v_name text;
BEGIN
    -- PostgreSQL grants EXECUTE to PUBLIC by default. Only the owner and
    -- the roles granted below may run Mini-Jenkin's functions.
    EXECUTE format('REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA %I FROM PUBLIC', v_schema);
    ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

    FOREACH v_name IN ARRAY mj_worker_function_names() LOOP
        IF NOT EXISTS (SELECT FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                       WHERE n.nspname = v_schema AND p.proname = v_name) THEN
            RAISE EXCEPTION 'worker function % does not exist in schema %', v_name, v_schema
                USING HINT = 'Remove it from mj_worker_function_names() or create it first.';
        END IF;
    END LOOP;

    FOR v_function IN
        SELECT p.oid::regprocedure
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = v_schema AND p.proname = ANY (mj_worker_function_names())
    LOOP
        -- pg_temp goes last so that a temporary object of the caller can
        -- never stand in for one of ours. mj_logs_flush_v1 reads its staging
        -- table by its full name, pg_temp.mj_log_batch.
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp',
                       v_function, v_schema);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO minijenkin_worker', v_function);
    END LOOP;

    -- A deferred trigger runs at commit, after the worker function that
    -- fired it has returned, so with the caller's (the worker role's)
    -- privileges unless it has its owner's.
    EXECUTE format('ALTER FUNCTION mj_run_group_closed_v1() SECURITY DEFINER SET search_path = %I, pg_temp',
                   v_schema);
END;
$$;
