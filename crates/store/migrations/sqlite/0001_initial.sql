-- The store's schema on SQLite. PostgreSQL's (../postgres/0001_initial.sql) has the same tables,
-- columns and indexes; only the types differ. Instants are milliseconds since the Unix epoch;
-- JSON is text. Secret values inside JSON columns are sealed before they are written.

-- A value sealed under the platform key when the database was created: opening it at start-up
-- tells a wrong key apart before anything is read or written.
CREATE TABLE platform_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    check_value TEXT NOT NULL
) STRICT;

CREATE TABLE operators (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    -- The last configuration version handed out; bumping it serialises concurrent saves.
    last_configuration_version INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Every version of every configuration, never changed or deleted.
CREATE TABLE configurations (
    operator TEXT NOT NULL REFERENCES operators (id),
    version INTEGER NOT NULL,
    config TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (operator, version)
) STRICT;

CREATE TABLE deployments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    operator TEXT NOT NULL,
    configuration_version INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    report TEXT,
    -- The last event sequence number handed out; bumping it serialises concurrent appends.
    last_event_seq INTEGER NOT NULL DEFAULT 0,
    FOREIGN KEY (operator, configuration_version) REFERENCES configurations (operator, version)
) STRICT;
CREATE INDEX deployments_by_operator ON deployments (operator, id);

CREATE TABLE events (
    deployment INTEGER NOT NULL REFERENCES deployments (id),
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (deployment, seq)
) STRICT;

-- The engine's tables (resources, journal, leases) are keyed by operator id without a foreign
-- key: `fediversity apply` may record state for an operator the panel never registered.
CREATE TABLE resources (
    operator TEXT NOT NULL,
    address TEXT NOT NULL,
    record TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (operator, address)
) STRICT;

CREATE TABLE journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    operator TEXT NOT NULL,
    address TEXT NOT NULL,
    provider TEXT NOT NULL,
    operation TEXT NOT NULL CHECK (operation IN ('create', 'update', 'delete')),
    idempotency_key TEXT NOT NULL,
    inputs TEXT NOT NULL,
    at INTEGER NOT NULL,
    outcome TEXT,
    finished_at INTEGER
) STRICT;
-- Open intents are read at the start of every run; finished ones only by people.
CREATE INDEX journal_open ON journal (operator, id) WHERE finished_at IS NULL;
CREATE INDEX journal_by_operator ON journal (operator, id);

CREATE TABLE leases (
    operator TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    operator TEXT,
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    locked_by TEXT,
    locked_until INTEGER,
    run_after INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    finished_at INTEGER,
    last_error TEXT
) STRICT;
-- A claim takes the oldest queued job that is due, or a running one whose worker's lock lapsed.
CREATE INDEX jobs_queued ON jobs (run_after, id) WHERE status = 'queued';
CREATE INDEX jobs_running ON jobs (locked_until) WHERE status = 'running';
CREATE INDEX jobs_by_operator ON jobs (operator, id);
