-- Assets: video on demand. Recordings of sessions now; uploads and URL imports later.
--
-- `source` is the JSON of Studio's asset source (`{"type": "recording", "sessionId": ...}`),
-- with its type and ids copied into columns for filters. `files` (JSON) lists the objects the
-- asset's playback is made of; it is never returned. A recording asset's id is its session's id.

CREATE TABLE assets (
    id                     TEXT PRIMARY KEY,
    project_id             TEXT NOT NULL REFERENCES projects (id),
    user_id                TEXT NOT NULL REFERENCES users (id),
    name                   TEXT NOT NULL,
    playback_id            TEXT NOT NULL,
    source                 TEXT NOT NULL,
    source_type            TEXT NOT NULL,
    source_session_id      TEXT,
    source_url             TEXT,
    creator_id             TEXT,
    playback_policy        TEXT,
    created_by_token_name  TEXT,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL,
    phase                  TEXT NOT NULL,
    progress               DOUBLE PRECISION,
    error_message          TEXT,
    size                   BIGINT,
    video_spec             TEXT,
    files                  TEXT,
    deleted                BIGINT NOT NULL DEFAULT 0,
    deleted_at             BIGINT
);
CREATE UNIQUE INDEX assets_playback_id ON assets (playback_id);
CREATE INDEX assets_project_order ON assets (project_id, deleted, updated_at, created_at);
CREATE INDEX assets_source_session ON assets (project_id, source_session_id);
