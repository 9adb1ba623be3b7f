-- What a task needs but the API never shows (the credentials of a transcode's S3 buckets): kept
-- beside `params` (which shows them as "***") and removed when the task ends.
ALTER TABLE tasks ADD COLUMN secret_params TEXT;
