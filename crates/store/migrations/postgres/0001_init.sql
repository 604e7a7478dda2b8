-- simbatch schema, PostgreSQL. Times are Unix milliseconds. JSON is TEXT.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    key_id      TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    secret_hash TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE templates (
    name        TEXT PRIMARY KEY,
    content     BYTEA NOT NULL,
    size        BIGINT NOT NULL,
    sha256      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE sims (
    tenant_id           TEXT NOT NULL,
    iccid               TEXT NOT NULL,
    imsi                TEXT,
    msisdn              TEXT,
    eid                 TEXT,
    imei                TEXT,
    status              TEXT NOT NULL,
    subscription_state  TEXT,
    blocked             BOOLEAN NOT NULL DEFAULT FALSE,
    rate_plan           TEXT,
    supplementary_plans TEXT NOT NULL DEFAULT '[]',
    services            TEXT NOT NULL DEFAULT '{}',
    apn_status          TEXT,
    custom_field_1      TEXT,
    custom_field_2      TEXT,
    custom_field_3      TEXT,
    custom_field_4      TEXT,
    custom_field_5      TEXT,
    ki_enc              TEXT,
    opc_enc             TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, iccid)
) WITH (fillfactor = 70); -- room for HOT status updates: no index entries per lifecycle order
CREATE INDEX sims_imsi ON sims (tenant_id, imsi) WHERE imsi IS NOT NULL;
CREATE INDEX sims_msisdn ON sims (tenant_id, msisdn) WHERE msisdn IS NOT NULL;

CREATE TABLE sim_history (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    iccid       TEXT NOT NULL,
    at          BIGINT NOT NULL,
    operation   TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    batch_id    TEXT,
    item_id     BIGINT
);
CREATE INDEX sim_history_sim ON sim_history (tenant_id, iccid, id);

CREATE TABLE profiles (
    tenant_id       TEXT NOT NULL,
    iccid           TEXT NOT NULL,
    matching_id     TEXT NOT NULL UNIQUE,
    activation_code TEXT NOT NULL,
    cc_hash_enc     TEXT,
    template        TEXT,
    state           TEXT NOT NULL,
    apn             TEXT,
    expires_at      BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, iccid)
);

CREATE TABLE batches (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    operation    TEXT,
    mode         TEXT NOT NULL,
    status       TEXT NOT NULL,
    source       TEXT NOT NULL,
    external_ref TEXT,
    parent_id    TEXT,
    total        BIGINT NOT NULL DEFAULT 0,
    approved     BIGINT NOT NULL DEFAULT 0,
    rejected     BIGINT NOT NULL DEFAULT 0,
    processing   BIGINT NOT NULL DEFAULT 0,
    completed    BIGINT NOT NULL DEFAULT 0,
    failed       BIGINT NOT NULL DEFAULT 0,
    canceled     BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    completed_at BIGINT
);
CREATE INDEX batches_tenant ON batches (tenant_id, id);
CREATE UNIQUE INDEX batches_ref ON batches (tenant_id, source, external_ref) WHERE external_ref IS NOT NULL;
CREATE INDEX batches_retention ON batches (created_at) WHERE status IN ('COMPLETED', 'PARTIALLY_COMPLETED', 'CANCELLED');

-- id is global submission order: per-SIM ordering compares ids.
CREATE TABLE batch_items (
    id           BIGSERIAL PRIMARY KEY,
    batch_id     TEXT NOT NULL,
    tenant_id    TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    iccid        TEXT NOT NULL,
    operation    TEXT,
    status       TEXT NOT NULL,
    params       TEXT NOT NULL,
    secret_enc   TEXT,
    error_field  TEXT,
    error_code   TEXT,
    error_reason TEXT,
    result       TEXT,
    lease_token  TEXT,
    lease_until  BIGINT,
    updated_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX batch_items_seq ON batch_items (batch_id, seq);
CREATE INDEX batch_items_runnable ON batch_items (id) WHERE status = 'APPROVED';
CREATE INDEX batch_items_leased ON batch_items (lease_until) WHERE status = 'PROCESSING';
CREATE INDEX batch_items_active_sim ON batch_items (tenant_id, iccid, id) WHERE status IN ('APPROVED', 'PROCESSING');
CREATE INDEX batch_items_unsuccessful ON batch_items (batch_id, status, seq) WHERE status IN ('REJECTED', 'FAILED', 'CANCELED');

CREATE TABLE outbox (
    id         BIGSERIAL PRIMARY KEY,
    event_id   TEXT NOT NULL, -- UUID v4, unique by construction: no index on the hot path
    tenant_id  TEXT NOT NULL,
    type       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    data       TEXT NOT NULL
);
CREATE INDEX outbox_tenant ON outbox (tenant_id, id);

CREATE TABLE webhooks (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    url             TEXT NOT NULL,
    secret_enc      TEXT NOT NULL,
    enabled         BOOLEAN NOT NULL DEFAULT TRUE,
    disabled_reason TEXT,
    cursor          BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks (tenant_id);

CREATE TABLE webhook_deliveries (
    id          BIGSERIAL PRIMARY KEY,
    webhook_id  TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    attempt     BIGINT NOT NULL,
    status_code BIGINT,
    error       TEXT,
    duration_ms BIGINT NOT NULL,
    at          BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, id);

CREATE TABLE idempotency_keys (
    tenant_id    TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status_code  BIGINT,
    body         TEXT,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
