-- Recordings in progress, written as their segments arrive, so that a node that dies loses no
-- recording: whichever node finds one abandoned finishes it (api/src/recording/recovery.rs).
-- A recording's rows are removed in the transaction that makes its asset ready or failed.

CREATE TABLE recordings (
    session_id   TEXT PRIMARY KEY REFERENCES sessions (id),
    project_id   TEXT NOT NULL REFERENCES projects (id),
    -- JSON: the recording's entry in its master playlist (codecs, resolution, frame rate), from
    -- its first segment.
    variant      TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    -- NULL while the session is live. Once it ended: until when the node turning the recording
    -- into its asset holds it; that node renews it while it works, another takes over after.
    lease_until  BIGINT,
    -- How many times a node took the recording to make its asset.
    attempts     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX recordings_lease ON recordings (lease_until);

-- One row per stored source segment of a recorded session: one small insert per segment.
CREATE TABLE recording_segments (
    session_id     TEXT NOT NULL REFERENCES recordings (session_id),
    project_id     TEXT NOT NULL REFERENCES projects (id),
    seq            BIGINT NOT NULL,
    object_key     TEXT NOT NULL,
    duration       DOUBLE PRECISION NOT NULL,
    discontinuity  BIGINT NOT NULL,
    PRIMARY KEY (session_id, seq)
);

-- Sessions still open, to find those whose node died.
CREATE INDEX sessions_open ON sessions (last_seen) WHERE ended_at IS NULL;
-- Assets not finished, to find those whose node died.
CREATE INDEX assets_unfinished ON assets (updated_at) WHERE phase IN ('waiting', 'processing');
