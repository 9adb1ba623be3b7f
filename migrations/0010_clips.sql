-- Clips (api/src/assets/clip.rs).
--
-- Every session's stored source segments are indexed, recorded or not, and the index outlives
-- the session: a clip is cut from it, of the live session or of a past one. Each segment is known
-- by the wall-clock time of its first frame (its EXT-X-PROGRAM-DATE-TIME, which players compute
-- clip times from). Recordings read their segments from here too; the index replaces
-- `recording_segments`, whose rows (of recordings in progress) move over without a start time.
CREATE TABLE session_segments (
    session_id     TEXT NOT NULL REFERENCES sessions (id),
    project_id     TEXT NOT NULL REFERENCES projects (id),
    seq            BIGINT NOT NULL,
    object_key     TEXT NOT NULL,
    -- Unix ms of the segment's first frame; NULL for segments indexed before this migration.
    start_ms       BIGINT,
    duration       DOUBLE PRECISION NOT NULL,
    discontinuity  BIGINT NOT NULL,
    PRIMARY KEY (session_id, seq)
);
INSERT INTO session_segments (session_id, project_id, seq, object_key, start_ms, duration, discontinuity)
    SELECT session_id, project_id, seq, object_key, NULL, duration, discontinuity FROM recording_segments;
DROP TABLE recording_segments;

-- The clip quota counts a requester's clips in progress (Studio's requesterId: a digest of the
-- caller's address and the clipped playback id).
ALTER TABLE tasks ADD COLUMN requester_id TEXT;
CREATE INDEX tasks_requester ON tasks (requester_id, created_at) WHERE requester_id IS NOT NULL;
