-- Pipeline semantics the database enforces: a matrix's fail-fast.
--
-- A matrix job's spec carries {"strategy": {"job": <job id>, "fail_fast":
-- bool, ...}}; every combination of one matrix shares that job id within
-- its run. When one combination fails for good (the retry policy has no
-- attempt left, so the status becomes failed or timed_out) and the matrix
-- is fail-fast, the combinations that have not started yet are skipped.
-- Combinations already running finish: cancelling them would mark the whole
-- run cancelled instead of failed.
--
-- The trigger fires inside the statement that closes the job
-- (mj_job_close_v1), whose caller already holds the run's row lock, and
-- mj_run_advance_v1 runs right after it, so the skipped combinations'
-- dependents are settled in the same transaction.

CREATE OR REPLACE FUNCTION mj_matrix_fail_fast_v1() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    UPDATE jobs sibling
    SET status = 'skipped',
        finished_at = now(),
        reason = format('fail-fast: %s %s', NEW.name, replace(NEW.status, '_', ' '))
    WHERE sibling.run_id = NEW.run_id
      AND sibling.id <> NEW.id
      AND sibling.status IN ('pending', 'queued')
      AND sibling.spec -> 'strategy' ->> 'job' = NEW.spec -> 'strategy' ->> 'job';
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER jobs_matrix_fail_fast
    AFTER UPDATE OF status ON jobs
    FOR EACH ROW
    WHEN (NEW.status IN ('failed', 'timed_out')
          AND OLD.status IS DISTINCT FROM NEW.status
          AND NOT NEW.continue_on_error
          AND (NEW.spec -> 'strategy' ->> 'fail_fast') = 'true')
    EXECUTE FUNCTION mj_matrix_fail_fast_v1();
