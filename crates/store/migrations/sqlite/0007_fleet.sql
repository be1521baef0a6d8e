-- Fleet operations: the hosting provider's releases, where each operator is in a release's
-- rollout, and the notifications the rollout sends. All of the scheduler's state is here, so
-- that a restarted worker continues where the last one stopped.

-- A platform release: the infra.toml it brings (as given), how it rolls out, and where the
-- rollout is (running, paused, halted or done; `halt_reason` says why it halted).
CREATE TABLE fleet_releases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    severity TEXT NOT NULL CHECK (severity IN ('routine', 'security')),
    deadline INTEGER,
    infra TEXT NOT NULL,
    policy TEXT NOT NULL,
    expected_minutes INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'paused', 'halted', 'done')),
    halt_reason TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- One operator in one release's rollout: its wave (0 = canaries), its slot (JSON, none until
-- its wave opens), its status and, when it failed, why.
CREATE TABLE fleet_items (
    release_id INTEGER NOT NULL REFERENCES fleet_releases (id) ON DELETE CASCADE,
    operator TEXT NOT NULL,
    wave INTEGER NOT NULL,
    slot TEXT,
    status TEXT NOT NULL
        CHECK (status IN ('scheduled', 'running', 'succeeded', 'failed', 'skipped')),
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (release_id, operator)
) STRICT;

CREATE INDEX fleet_items_by_operator ON fleet_items (operator, release_id);

-- What an operator is told: shown in the panel, and e-mailed once (`emailed_at`). The key
-- (release, operator, kind, occasion) is unique, so a scheduler that crashed after writing a
-- notification and ran again never writes, nor sends, it twice.
CREATE TABLE fleet_notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    release_id INTEGER NOT NULL REFERENCES fleet_releases (id) ON DELETE CASCADE,
    operator TEXT NOT NULL,
    kind TEXT NOT NULL,
    occasion TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    emailed_at INTEGER,
    UNIQUE (release_id, operator, kind, occasion)
) STRICT;

CREATE INDEX fleet_notifications_by_operator ON fleet_notifications (operator, id);
