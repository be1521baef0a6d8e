-- The store's schema on PostgreSQL. SQLite's (../sqlite/0001_initial.sql) has the same tables,
-- columns and indexes; only the types differ. Instants are milliseconds since the Unix epoch;
-- JSON is jsonb. Secret values inside JSON columns are sealed before they are written.

-- A value sealed under the platform key when the database was created: opening it at start-up
-- tells a wrong key apart before anything is read or written.
CREATE TABLE platform_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    check_value TEXT NOT NULL
);

CREATE TABLE operators (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    -- The last configuration version handed out; bumping it serialises concurrent saves.
    last_configuration_version BIGINT NOT NULL DEFAULT 0
);

-- Every version of every configuration, never changed or deleted.
CREATE TABLE configurations (
    operator TEXT NOT NULL REFERENCES operators (id),
    version BIGINT NOT NULL,
    config JSONB NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (operator, version)
);

CREATE TABLE deployments (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    operator TEXT NOT NULL,
    configuration_version BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    report JSONB,
    -- The last event sequence number handed out; bumping it serialises concurrent appends.
    last_event_seq BIGINT NOT NULL DEFAULT 0,
    FOREIGN KEY (operator, configuration_version) REFERENCES configurations (operator, version)
);
CREATE INDEX deployments_by_operator ON deployments (operator, id);

CREATE TABLE events (
    deployment BIGINT NOT NULL REFERENCES deployments (id),
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    event JSONB NOT NULL,
    PRIMARY KEY (deployment, seq)
);

-- The engine's tables (resources, journal, leases) are keyed by operator id without a foreign
-- key: `fediversity apply` may record state for an operator the panel never registered.
CREATE TABLE resources (
    operator TEXT NOT NULL,
    address TEXT NOT NULL,
    record JSONB NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (operator, address)
);

CREATE TABLE journal (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    operator TEXT NOT NULL,
    address TEXT NOT NULL,
    provider TEXT NOT NULL,
    operation TEXT NOT NULL CHECK (operation IN ('create', 'update', 'delete')),
    idempotency_key TEXT NOT NULL,
    inputs JSONB NOT NULL,
    at BIGINT NOT NULL,
    outcome JSONB,
    finished_at BIGINT
);
-- Open intents are read at the start of every run; finished ones only by people.
CREATE INDEX journal_open ON journal (operator, id) WHERE finished_at IS NULL;
CREATE INDEX journal_by_operator ON journal (operator, id);

CREATE TABLE leases (
    operator TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE jobs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    operator TEXT,
    payload JSONB NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts BIGINT NOT NULL DEFAULT 0,
    locked_by TEXT,
    locked_until BIGINT,
    run_after BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    finished_at BIGINT,
    last_error TEXT
);
-- A claim takes the oldest queued job that is due, or a running one whose worker's lock lapsed.
CREATE INDEX jobs_queued ON jobs (run_after, id) WHERE status = 'queued';
CREATE INDEX jobs_running ON jobs (locked_until) WHERE status = 'running';
CREATE INDEX jobs_by_operator ON jobs (operator, id);
