-- Video on demand: uploads, URL imports and the asset pipeline (api/src/assets/).

-- What the asset was asked to be: its rendition ladder (JSON, Studio's `profiles`; NULL for the
-- default ladder) and whether static MP4s are made. `hash` is the source's digests (JSON,
-- `[{hash, algorithm}]`), known once it is uploaded.
ALTER TABLE assets ADD COLUMN profiles TEXT;
ALTER TABLE assets ADD COLUMN static_mp4 BIGINT NOT NULL DEFAULT 0;
ALTER TABLE assets ADD COLUMN hash TEXT;
-- The 15-minute dedupe of URL imports looks assets up by URL.
CREATE INDEX assets_source_url ON assets (project_id, source_url, created_at);

-- Secrets the server makes for itself, shared by every node (e.g. the key that signs upload
-- URLs when the configuration gives none). The first node to start writes them.
CREATE TABLE server_secrets (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
