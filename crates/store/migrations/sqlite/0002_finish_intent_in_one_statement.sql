-- Finishing an intent in one statement (SQLite only; PostgreSQL does it with a data-modifying
-- `WITH`, which SQLite lacks).
--
-- Every statement is a round trip to the connection's worker thread, so the engine's
-- `finish_intent` (record the outcome and change the resource's record, atomically) is one
-- `UPDATE journal` instead of BEGIN, UPDATE, UPSERT or DELETE, COMMIT. The update carries the
-- change to the record in the `pending_*` columns; the trigger below applies it to `resources`
-- inside that statement's own transaction (a failing trigger undoes the whole update) and clears
-- the columns again, so the record is stored once, in `resources`. The update only matches open
-- intents of the operators it names: a row it does not match runs no trigger and changes
-- nothing. The trigger runs for each row, so one update may finish several intents.

-- What finishing the intent does to its resource's record: 'upsert' writes `pending_record`
-- (sealed JSON) with `pending_updated_at`, 'remove' deletes the record, NULL leaves it.
-- Always NULL outside the finishing statement.
ALTER TABLE journal ADD COLUMN pending_change TEXT CHECK (pending_change IN ('upsert', 'remove'));
ALTER TABLE journal ADD COLUMN pending_record TEXT;
ALTER TABLE journal ADD COLUMN pending_updated_at INTEGER;

CREATE TRIGGER journal_finish_changes_record
AFTER UPDATE OF pending_change ON journal
FOR EACH ROW WHEN NEW.pending_change IS NOT NULL
BEGIN
    -- `WHERE` before `ON CONFLICT`: SQLite's grammar needs it for an upsert from a SELECT.
    -- A missing record makes the insert fail (NOT NULL), and with it the finishing statement.
    INSERT INTO resources (operator, address, record, updated_at)
    SELECT NEW.operator, NEW.address, NEW.pending_record, NEW.pending_updated_at
    WHERE NEW.pending_change = 'upsert'
    ON CONFLICT (operator, address) DO UPDATE
    SET record = excluded.record, updated_at = excluded.updated_at;

    DELETE FROM resources
    WHERE NEW.pending_change = 'remove' AND operator = NEW.operator AND address = NEW.address;

    -- Sets `pending_change` to NULL, so this trigger's WHEN stops it firing again.
    UPDATE journal SET pending_change = NULL, pending_record = NULL, pending_updated_at = NULL
    WHERE id = NEW.id;
END;
