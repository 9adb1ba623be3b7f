-- TUS uploads (api/src/assets/tus.rs): the state of each upload in the database and its bytes in
-- the object store, one object per stored piece, so that an upload resumes on any node and after
-- a restart.

CREATE TABLE tus_uploads (
    id             TEXT PRIMARY KEY,
    project_id     TEXT NOT NULL REFERENCES projects (id),
    asset_id       TEXT NOT NULL,
    -- Upload-Length: the size of the whole file.
    length         BIGINT NOT NULL,
    -- Upload-Offset: the bytes stored so far (the sum of the parts' sizes).
    upload_offset  BIGINT NOT NULL DEFAULT 0,
    -- Upload-Metadata as the client sent it.
    metadata       TEXT,
    created_at     BIGINT NOT NULL,
    -- Past it, an unfinished upload is refused and removed.
    expires_at     BIGINT NOT NULL,
    completed_at   BIGINT
);
CREATE INDEX tus_uploads_unfinished ON tus_uploads (expires_at) WHERE completed_at IS NULL;

-- The stored pieces of an upload, in order of `start` (their offset in the file).
CREATE TABLE tus_parts (
    upload_id   TEXT NOT NULL REFERENCES tus_uploads (id),
    start       BIGINT NOT NULL,
    object_key  TEXT NOT NULL,
    size        BIGINT NOT NULL,
    PRIMARY KEY (upload_id, start)
);
