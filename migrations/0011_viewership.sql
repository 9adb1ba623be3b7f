-- Viewership (api/src/viewership/).
--
-- Raw viewer sessions, one row per viewer of a playback ID within a session window, written by the
-- node that saw the viewer first (the row's id is the same on every node, so a viewer seen by two
-- nodes is one view). Bounded: rows older than the retention are deleted.
CREATE TABLE view_sessions (
    id            TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL,
    playback_id   TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    playtime_ms   BIGINT NOT NULL,
    device_type   TEXT NOT NULL,
    browser       TEXT NOT NULL,
    os            TEXT NOT NULL,
    country       TEXT NOT NULL
);
CREATE INDEX view_sessions_recent ON view_sessions (project_id, last_seen_at);
CREATE INDEX view_sessions_age ON view_sessions (started_at);

-- Players that send beacons (POST /analytics/log), by their own session id: whether they reported
-- an error, for the realtime error rate. Expire with viewer sessions.
CREATE TABLE player_sessions (
    id            TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL,
    playback_id   TEXT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    errored       BIGINT NOT NULL,
    device_type   TEXT NOT NULL,
    browser       TEXT NOT NULL,
    country       TEXT NOT NULL
);
CREATE INDEX player_sessions_recent ON player_sessions (project_id, last_seen_at);

-- Hourly rollups: what every query reads. One row per (project, playback ID, hour, dimensions).
-- Empty strings stand for unknown dimensions (they are omitted from answers).
CREATE TABLE view_rollups (
    project_id          TEXT NOT NULL,
    playback_id         TEXT NOT NULL,
    hour                BIGINT NOT NULL,
    creator_id          TEXT NOT NULL,
    device_type         TEXT NOT NULL,
    browser             TEXT NOT NULL,
    os                  TEXT NOT NULL,
    country             TEXT NOT NULL,
    view_count          BIGINT NOT NULL,
    playtime_ms         BIGINT NOT NULL,
    -- From players' beacons (POST /analytics/log).
    ttff_ms_sum         BIGINT NOT NULL DEFAULT 0,
    ttff_count          BIGINT NOT NULL DEFAULT 0,
    rebuffer_ms         BIGINT NOT NULL DEFAULT 0,
    beacon_playtime_ms  BIGINT NOT NULL DEFAULT 0,
    beacon_sessions     BIGINT NOT NULL DEFAULT 0,
    error_sessions      BIGINT NOT NULL DEFAULT 0,
    exits_before_start  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, hour, playback_id, creator_id, device_type, browser, os, country)
);
CREATE INDEX view_rollups_playback ON view_rollups (playback_id, hour);

-- The same sums without the playback ID, per project: what queries over a whole project read (a
-- month of hours over thousands of playback IDs is a few hundred rows here).
CREATE TABLE view_rollups_project (
    project_id          TEXT NOT NULL,
    hour                BIGINT NOT NULL,
    creator_id          TEXT NOT NULL,
    device_type         TEXT NOT NULL,
    browser             TEXT NOT NULL,
    os                  TEXT NOT NULL,
    country             TEXT NOT NULL,
    view_count          BIGINT NOT NULL,
    playtime_ms         BIGINT NOT NULL,
    ttff_ms_sum         BIGINT NOT NULL DEFAULT 0,
    ttff_count          BIGINT NOT NULL DEFAULT 0,
    rebuffer_ms         BIGINT NOT NULL DEFAULT 0,
    beacon_playtime_ms  BIGINT NOT NULL DEFAULT 0,
    beacon_sessions     BIGINT NOT NULL DEFAULT 0,
    error_sessions      BIGINT NOT NULL DEFAULT 0,
    exits_before_start  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, hour, creator_id, device_type, browser, os, country)
);
