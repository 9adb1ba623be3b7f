-- Live sessions: one row per accepted publish of a stream, with its running statistics.

CREATE TABLE sessions (
    id                            TEXT PRIMARY KEY,
    project_id                    TEXT NOT NULL REFERENCES projects (id),
    user_id                       TEXT NOT NULL REFERENCES users (id),
    stream_id                     TEXT NOT NULL REFERENCES streams (id),
    name                          TEXT NOT NULL,
    playback_id                   TEXT NOT NULL,
    created_at                    BIGINT NOT NULL,
    last_seen                     BIGINT NOT NULL DEFAULT 0,
    ended_at                      BIGINT,
    record                        BIGINT NOT NULL DEFAULT 0,
    profiles                      TEXT NOT NULL,
    recording_spec                TEXT,
    source_segments               BIGINT NOT NULL DEFAULT 0,
    transcoded_segments           BIGINT NOT NULL DEFAULT 0,
    source_segments_duration      DOUBLE PRECISION NOT NULL DEFAULT 0,
    transcoded_segments_duration  DOUBLE PRECISION NOT NULL DEFAULT 0,
    source_bytes                  BIGINT NOT NULL DEFAULT 0,
    transcoded_bytes              BIGINT NOT NULL DEFAULT 0,
    ingest_rate                   DOUBLE PRECISION NOT NULL DEFAULT 0,
    outgoing_rate                 DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE INDEX sessions_project_order ON sessions (project_id, last_seen, created_at);
CREATE INDEX sessions_stream ON sessions (project_id, stream_id, created_at);
