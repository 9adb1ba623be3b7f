-- Background work (Studio's `task` resource) and what the runner needs to do it exactly once
-- across nodes and restarts (api/src/tasks/runner.rs).

CREATE TABLE tasks (
    id               TEXT PRIMARY KEY,
    project_id       TEXT NOT NULL REFERENCES projects (id),
    user_id          TEXT NOT NULL,
    -- Studio's closed list: upload, export, export-data, transcode-file, clip.
    type             TEXT NOT NULL,
    -- pending, waiting, running, completed, failed or cancelled.
    phase            TEXT NOT NULL,
    progress         DOUBLE PRECISION NOT NULL DEFAULT 0,
    error_message    TEXT,
    -- Attempts that ended in a retriable error (status.retries).
    retries          BIGINT NOT NULL DEFAULT 0,
    input_asset_id   TEXT,
    output_asset_id  TEXT,
    -- JSON documents, keyed by type as in Studio (`{"upload": {...}}`).
    params           TEXT NOT NULL,
    output           TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    scheduled_at     BIGINT NOT NULL,
    -- Spawning the same (project, type, unique key) twice yields the first task; NULL keys never
    -- collide (on both engines).
    unique_key       TEXT,
    -- When the task may next be claimed (its schedule, or the end of a retry's backoff).
    run_at           BIGINT NOT NULL,
    -- Claims so far, a node that died while holding one included.
    attempts         BIGINT NOT NULL DEFAULT 0,
    max_attempts     BIGINT NOT NULL,
    -- How long one attempt may run (ms).
    deadline_ms      BIGINT NOT NULL,
    -- The node holding the task and until when; the holder renews it while the job runs, any
    -- node takes the task over once it has expired.
    lease_owner      TEXT,
    lease_until      BIGINT NOT NULL DEFAULT 0,
    heartbeat_at     BIGINT,
    -- Set by a cancellation of a running task; its runner notices at the next heartbeat.
    cancel_requested BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX tasks_unique_key ON tasks (project_id, type, unique_key);
CREATE INDEX tasks_claimable ON tasks (run_at) WHERE phase IN ('pending', 'waiting', 'running');
CREATE INDEX tasks_project ON tasks (project_id, updated_at);
