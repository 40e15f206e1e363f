-- The database role that workers log in as, or inherit from.
--
-- Workers run code from repositories, so a worker host is the least trusted
-- part of an installation. Its connection gets only what a worker needs:
-- EXECUTE on the queue's functions (granted in functions/90_security.sql,
-- which runs again after any function file changes). It gets no table
-- privileges, so it cannot read secrets, API tokens or other jobs' rows
-- except through those functions, which check the attempt's lease token.
--
-- `minijenkin_worker` is a NOLOGIN group role. Roles belong to the whole
-- server, not to one database, so the same group serves every Mini-Jenkin
-- database on a server, while the grants live in each database. Operators
-- create a login role in it:
--   CREATE ROLE ci_worker LOGIN PASSWORD '...' IN ROLE minijenkin_worker;
-- Creating a role needs CREATEROLE. A migrator without it stops here with
-- a message; an administrator then creates the group role once and runs the
-- migrations again.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'minijenkin_worker') THEN
        CREATE ROLE minijenkin_worker NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN
        -- Another database's migration on the same server created it meanwhile.
        NULL;
    WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'cannot create the role minijenkin_worker: %', SQLERRM
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'As a superuser or a role with CREATEROLE, run '
                         '"CREATE ROLE minijenkin_worker NOLOGIN", then run the migrations again.';
END;
$$;
