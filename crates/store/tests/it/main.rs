//! The store's integration tests: one suite, run on SQLite (a file in a temporary directory)
//! and on PostgreSQL (a throwaway server from the testkit, one database per test).
//!
//! Each suite function takes a fresh [`harness::TestDb`]; [`on_both_backends!`] turns it into
//! `sqlite::<name>` and `postgres::<name>` tests. PostgreSQL missing is a failure, not a skip:
//! `scripts/setup-test` installs it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod accounts;
mod addresses;
mod connect;
mod domains;
mod fleet;
mod harness;
mod identity_syncs;
mod invitations;
mod jobs;
mod oidc;
mod panel;
mod secrets;
mod sqlite_schema;
mod state;

/// Declares each `module::test` of the suite once per backend.
macro_rules! on_both_backends {
    ($($module:ident :: $test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let db = crate::harness::TestDb::sqlite(stringify!($test));
                    crate::$module::$test(db).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let db = crate::harness::TestDb::postgres(stringify!($test)).await;
                    crate::$module::$test(db).await;
                }
            )*
        }
    };
}

on_both_backends!(
    accounts::a_sign_up_makes_operator_and_user_together_or_neither,
    accounts::an_operators_emails_are_its_users_only,
    accounts::sessions_live_until_they_expire_or_end,
    invitations::an_invitation_is_used_once_and_refused_when_expired_or_revoked,
    invitations::of_concurrent_sign_ups_with_one_invitation_exactly_one_wins,
    addresses::addresses_are_claimed_once_held_and_released,
    addresses::of_many_concurrent_claims_of_one_address_exactly_one_wins,
    domains::a_domain_belongs_to_one_operator_and_nothing_nests_across_operators,
    domains::of_nested_domains_claimed_at_once_exactly_one_wins,
    identity_syncs::the_latest_sync_replaces_the_one_before_per_operator,
    identity_syncs::one_worker_at_a_time_may_sync_an_operator,
    state::state_round_trips_with_secrets,
    state::operators_never_see_each_others_rows,
    state::finish_intent_writes_outcome_and_record_together,
    state::a_cancelled_finish_intent_leaves_both_or_neither,
    state::open_intents_are_the_unfinished_ones_oldest_first,
    state::leases_are_taken_refused_renewed_and_taken_over,
    state::of_two_concurrent_acquirers_exactly_one_wins,
    state::concurrent_intents_each_get_their_own_id,
    state::concurrent_outcomes_finish_each_intent_once,
    panel::configurations_keep_every_version,
    panel::deployments_go_from_queued_to_finished,
    panel::events_are_appended_in_order_and_read_since_a_seq,
    jobs::concurrent_claimers_never_get_the_same_job,
    jobs::a_failed_job_is_claimable_again_after_run_after,
    jobs::a_lapsed_claim_is_taken_over_and_the_old_worker_cannot_report,
    secrets::secrets_are_never_stored_in_plaintext,
    secrets::a_store_opened_with_another_key_refuses_clearly,
    oidc::clients_are_created_updated_and_deleted_with_what_they_were_issued,
    oidc::a_code_is_redeemed_once_and_a_replay_revokes_its_tokens,
    oidc::a_refresh_token_is_spent_once_and_only_by_its_client,
    oidc::signing_keys_are_sealed_rotated_and_forgotten,
    fleet::releases_keep_their_rollout_and_state,
    fleet::rollout_items_record_slots_statuses_reasons_and_attempts,
    fleet::a_notification_is_written_and_emailed_once,
    fleet::a_rollout_item_keeps_the_deployment_started_for_it,
    fleet::one_holder_at_a_time_has_each_fleet_lease,
    fleet::a_guarded_replace_applies_only_to_the_item_as_it_was_read,
);
