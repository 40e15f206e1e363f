-- Checks of `minijenkin doctor`: read-only queries about the server, the
-- schema and the workers.

-- name: doctor_clock_read
-- The database clock as epoch seconds, with the server version number.
SELECT extract(epoch FROM clock_timestamp())::float8 AS now_epoch,
       current_setting('server_version_num')::integer AS server_version_num,
       current_setting('server_version') AS server_version;

-- name: doctor_migrations_list
-- Recorded migrations and function files with their checksums.
SELECT name, kind, checksum
FROM schema_migrations
ORDER BY name;

-- name: doctor_migrations_table_exists
-- Whether the migrator has created its table in this database.
SELECT to_regclass('schema_migrations') IS NOT NULL AS present;

-- name: doctor_workers_list
-- Workers that are active or stopping, with heartbeat age in seconds.
SELECT id, name, hostname, status, concurrency,
       extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age_seconds
FROM workers
WHERE status IN ('active', 'stopping')
ORDER BY hostname, name;

-- name: doctor_worker_clock_bounds
-- Bounds of each worker's clock offset from the database, in seconds, from its latest attempts.
-- Log timestamps come from the worker's clock, attempt start and end from the database:
-- a line logged after the attempt started bounds the offset from above, a step output
-- line logged before the attempt finished bounds it from below.
WITH recent AS (
    SELECT a.job_id, a.attempt, a.worker_id, a.started_at, a.finished_at
    FROM unnest(%(worker_ids)s::uuid[]) AS w (id)
    CROSS JOIN LATERAL (
        SELECT *
        FROM job_attempts a
        WHERE a.worker_id = w.id
          AND a.started_at >= now() - make_interval(secs => %(window_seconds)s::float8)
          AND a.finished_at IS NOT NULL
        ORDER BY a.started_at DESC
        LIMIT %(attempt_limit)s::integer
    ) a
)
SELECT r.worker_id,
       count(*)::integer AS attempts,
       min(extract(epoch FROM first_line.ts - r.started_at))::float8 AS upper_seconds,
       max(extract(epoch FROM last_line.ts - r.finished_at))::float8 AS lower_seconds
FROM recent r
LEFT JOIN LATERAL (
    SELECT l.ts FROM job_logs l
    WHERE l.job_id = r.job_id AND l.attempt = r.attempt
    ORDER BY l.seq
    LIMIT 1
) first_line ON true
LEFT JOIN LATERAL (
    SELECT l.ts FROM job_logs l
    WHERE l.job_id = r.job_id AND l.attempt = r.attempt AND l.stream IN (1, 2)
    ORDER BY l.seq DESC
    LIMIT 1
) last_line ON true
WHERE first_line.ts IS NOT NULL
GROUP BY r.worker_id;

-- name: doctor_secret_key_ids
-- Stored ciphertexts counted by the id of the key that sealed them (`mj1:<key id>:...`).
SELECT split_part(sealed.value, ':', 2) AS key_id, count(*)::integer AS sealed_values
FROM (
    SELECT value_encrypted AS value FROM secrets
    UNION ALL
    SELECT webhook_secret_encrypted FROM repositories WHERE webhook_secret_encrypted IS NOT NULL
    UNION ALL
    SELECT url_encrypted FROM notification_targets WHERE url_encrypted IS NOT NULL
    UNION ALL
    SELECT secret_encrypted FROM notification_targets WHERE secret_encrypted IS NOT NULL
) sealed
WHERE sealed.value LIKE 'mj1:%'
GROUP BY 1
ORDER BY 1;
