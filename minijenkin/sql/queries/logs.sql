-- name: log_attempt_day
-- The partition day of an attempt's log lines: the UTC day the attempt started.
SELECT (started_at AT TIME ZONE 'UTC')::date AS day, status, finished_at
FROM job_attempts
WHERE job_id = %(job_id)s::bigint AND attempt = %(attempt)s::integer;

-- name: log_lines_after
-- Read up to `limit` lines of one attempt after a sequence number, in order.
SELECT seq, stream, ts, line
FROM job_logs
WHERE job_id = %(job_id)s::bigint
  AND attempt = %(attempt)s::integer
  AND day = %(day)s::date
  AND seq > %(after)s::integer
ORDER BY seq
LIMIT %(limit)s::integer;
