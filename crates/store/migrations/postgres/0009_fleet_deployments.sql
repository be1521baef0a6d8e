-- The deployment a rollout started for each operator: its outcome is the operator's in the
-- rollout, read by the scheduler and shown in `fediversity fleet status`.
ALTER TABLE fleet_items ADD COLUMN deployment_id BIGINT;
