-- The latest user sync of each operator's own directory: the snapshot the next sync compares
-- with, and the report the panel shows. Written as the identity provider's sync returns them.
CREATE TABLE identity_syncs (
    operator TEXT PRIMARY KEY,
    snapshot TEXT NOT NULL,
    report TEXT NOT NULL,
    synced_at INTEGER NOT NULL
) STRICT;
