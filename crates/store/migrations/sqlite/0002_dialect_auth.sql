-- Vendor-dialect authentication (Simlessly HMAC) and signed links.
-- HMAC schemes need the key secret itself, not only its hash: keep a copy
-- sealed with the master key (purpose `api_key_secret`). Keys created before
-- this migration have none and cannot sign HMAC requests until re-created.
ALTER TABLE api_keys ADD COLUMN secret_enc TEXT;

-- Request ids already used by a key (replay refusal), kept for a while.
CREATE TABLE seen_request_ids (
    key_id      TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    seen_at     INTEGER NOT NULL,
    PRIMARY KEY (key_id, request_id)
) WITHOUT ROWID;
CREATE INDEX seen_request_ids_at ON seen_request_ids (seen_at);

-- Platform-wide random secrets (e.g. the URL-signing key), sealed.
CREATE TABLE server_secrets (
    name        TEXT PRIMARY KEY,
    secret_enc  TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
