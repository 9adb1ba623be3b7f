-- Recording processing runs on the job system (an internal `recording` task per recorded
-- session, api/src/recording/task.rs): the task's lease and attempts replace the recording's
-- own. `recordings.lease_until` and `recordings.attempts` are no longer read or written (SQLite
-- cannot drop them from this table's definition); only their index goes.

DROP INDEX recordings_lease;
