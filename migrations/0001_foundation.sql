-- Foundation schema: tenancy, streams, multistream targets, signing keys, webhooks and the event outbox.
--
-- Portable between SQLite and PostgreSQL: BIGINT for integers, 0/1 booleans and millisecond timestamps,
-- DOUBLE PRECISION for reals, TEXT for ids and JSON documents. Every tenant-owned table carries
-- project_id and user_id, and every index that serves a lookup starts with project_id.

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_name ON users (name);

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    deleted     BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX projects_user_name ON projects (user_id, name) WHERE deleted = 0;

-- API keys: only the SHA-256 of the secret is stored.
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    key_hash    TEXT NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id),
    project_id  TEXT NOT NULL REFERENCES projects (id),
    name        TEXT NOT NULL,
    admin       BIGINT NOT NULL DEFAULT 0,
    access      TEXT,
    created_at  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL DEFAULT 0,
    revoked     BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX api_keys_key_hash ON api_keys (key_hash);
CREATE INDEX api_keys_project ON api_keys (project_id, created_at);

-- Playback IDs are unique across every kind of playable resource (streams now, assets later).
CREATE TABLE playback_ids (
    playback_id    TEXT PRIMARY KEY,
    resource_type  TEXT NOT NULL,
    resource_id    TEXT NOT NULL
);

CREATE TABLE streams (
    id                            TEXT PRIMARY KEY,
    project_id                    TEXT NOT NULL REFERENCES projects (id),
    user_id                       TEXT NOT NULL REFERENCES users (id),
    name                          TEXT NOT NULL,
    stream_key                    TEXT NOT NULL,
    playback_id                   TEXT NOT NULL,
    parent_id                     TEXT,
    created_at                    BIGINT NOT NULL,
    updated_at                    BIGINT NOT NULL,
    last_seen                     BIGINT NOT NULL DEFAULT 0,
    last_terminated_at            BIGINT,
    is_active                     BIGINT NOT NULL DEFAULT 0,
    is_healthy                    BIGINT,
    issues                        TEXT,
    suspended                     BIGINT NOT NULL DEFAULT 0,
    record                        BIGINT NOT NULL DEFAULT 0,
    deleted                       BIGINT NOT NULL DEFAULT 0,
    deleted_at                    BIGINT,
    creator_id                    TEXT,
    user_tags                     TEXT,
    pull                          TEXT,
    playback_policy               TEXT,
    profiles                      TEXT NOT NULL,
    recording_spec                TEXT,
    multistream                   TEXT,
    created_by_token_name         TEXT,
    source_segments               BIGINT NOT NULL DEFAULT 0,
    transcoded_segments           BIGINT NOT NULL DEFAULT 0,
    source_segments_duration      DOUBLE PRECISION NOT NULL DEFAULT 0,
    transcoded_segments_duration  DOUBLE PRECISION NOT NULL DEFAULT 0,
    source_bytes                  BIGINT NOT NULL DEFAULT 0,
    transcoded_bytes              BIGINT NOT NULL DEFAULT 0,
    ingest_rate                   DOUBLE PRECISION NOT NULL DEFAULT 0,
    outgoing_rate                 DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX streams_stream_key ON streams (stream_key);
CREATE UNIQUE INDEX streams_playback_id ON streams (playback_id);
CREATE INDEX streams_project_order ON streams (project_id, deleted, last_seen, created_at);

CREATE TABLE multistream_targets (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects (id),
    user_id     TEXT NOT NULL REFERENCES users (id),
    name        TEXT NOT NULL,
    url         TEXT NOT NULL,
    disabled    BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL
);
CREATE INDEX multistream_targets_project ON multistream_targets (project_id, created_at);

-- Signing keys: only the public key is stored; the private key is shown once at creation.
CREATE TABLE signing_keys (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects (id),
    user_id     TEXT NOT NULL REFERENCES users (id),
    name        TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    disabled    BIGINT NOT NULL DEFAULT 0,
    deleted     BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    last_seen   BIGINT
);
CREATE INDEX signing_keys_project ON signing_keys (project_id, deleted, created_at);

CREATE TABLE webhooks (
    id                 TEXT PRIMARY KEY,
    project_id         TEXT NOT NULL REFERENCES projects (id),
    user_id            TEXT NOT NULL REFERENCES users (id),
    name               TEXT NOT NULL,
    url                TEXT NOT NULL,
    events             TEXT NOT NULL,
    shared_secret      TEXT NOT NULL,
    stream_id          TEXT,
    created_at         BIGINT NOT NULL,
    deleted            BIGINT NOT NULL DEFAULT 0,
    last_triggered_at  BIGINT,
    last_failure       TEXT
);
CREATE INDEX webhooks_project ON webhooks (project_id, deleted, created_at);

-- The outbox: an event row is written in the same transaction as the change that causes it.
-- The dispatcher fans each event out into one delivery per matching webhook.
CREATE TABLE events (
    id             TEXT PRIMARY KEY,
    project_id     TEXT NOT NULL REFERENCES projects (id),
    user_id        TEXT NOT NULL REFERENCES users (id),
    event          TEXT NOT NULL,
    stream_id      TEXT,
    stream         TEXT,
    payload        TEXT,
    created_at     BIGINT NOT NULL,
    dispatched_at  BIGINT
);
CREATE INDEX events_pending ON events (dispatched_at, created_at);

-- One webhook's copy of one event, with its retry state.
CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL REFERENCES events (id),
    webhook_id       TEXT NOT NULL REFERENCES webhooks (id),
    project_id       TEXT NOT NULL REFERENCES projects (id),
    attempts         BIGINT NOT NULL DEFAULT 0,
    state            TEXT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    lease_until      BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);

-- Every delivery attempt, as the webhook log API shows it.
CREATE TABLE webhook_logs (
    id           TEXT PRIMARY KEY,
    webhook_id   TEXT NOT NULL REFERENCES webhooks (id),
    project_id   TEXT NOT NULL REFERENCES projects (id),
    user_id      TEXT NOT NULL REFERENCES users (id),
    event_id     TEXT NOT NULL,
    event        TEXT NOT NULL,
    resource_id  TEXT,
    created_at   BIGINT NOT NULL,
    duration     DOUBLE PRECISION NOT NULL,
    success      BIGINT NOT NULL,
    status_code  BIGINT,
    error        TEXT,
    request      TEXT NOT NULL,
    response     TEXT
);
CREATE INDEX webhook_logs_webhook ON webhook_logs (project_id, webhook_id, created_at);
