//! The conformance suite every [`Store`] backend must pass, generic over the backend. Each case
//! is a `pub async fn` taking a [`StoreFactory`]; [`crate::conformance_tests!`] expands into one
//! `#[tokio::test]` per case, so a backend's test file is one line:
//!
//! ```ignore
//! sentinel_coord::conformance_tests!(|clock| async move {
//!     std::sync::Arc::new(MyStore::connect_fresh(clock).await) as std::sync::Arc<dyn sentinel_coord::Store>
//! });
//! ```
//!
//! The factory must return an empty store that reads time only from the given clock (a
//! [`ManualClock`]), so expiry is tested by moving the clock, not by sleeping. The calling crate
//! needs `tokio` (with `macros` and `rt-multi-thread`) as a dev-dependency. This module only
//! asserts behaviour through the contract; it must never look inside a backend.

mod fairness;
mod incarnations;
mod listing;
mod locks;
mod memory;
mod proofs;
mod queue;
mod quotas;
mod ranges;
mod registry;
mod release;
mod sealing;
mod tenancy;
mod typed;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use fairness::*;
pub use incarnations::*;
pub use listing::*;
pub use locks::*;
pub use memory::*;
pub use proofs::*;
pub use queue::*;
pub use quotas::*;
pub use ranges::*;
pub use registry::*;
pub use release::*;
pub use sealing::*;
pub use tenancy::*;
pub use typed::*;

use crate::clock::{Clock, ManualClock};
use crate::store::Store;

/// Creates a fresh, empty store driven by the given clock.
pub trait StoreFactory: Send + Sync {
    fn create(&self, clock: Arc<dyn Clock>)
    -> Pin<Box<dyn Future<Output = Arc<dyn Store>> + Send>>;
}

impl<F, Fut> StoreFactory for F
where
    F: Fn(Arc<dyn Clock>) -> Fut + Send + Sync,
    Fut: Future<Output = Arc<dyn Store>> + Send + 'static,
{
    fn create(
        &self,
        clock: Arc<dyn Clock>,
    ) -> Pin<Box<dyn Future<Output = Arc<dyn Store>> + Send>> {
        Box::pin(self(clock))
    }
}

/// A fresh store and the manual clock that drives it.
pub async fn fresh(factory: &dyn StoreFactory) -> (Arc<dyn Store>, Arc<ManualClock>) {
    let clock = ManualClock::new();
    let store = factory.create(clock.clone()).await;
    (store, clock)
}

/// Expands into one `#[tokio::test]` per conformance case, each calling
/// `sentinel_coord::conformance::<case>(&factory)` with `factory = $factory`.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::__conformance_cases!($factory;
            keyset_pages_walk_every_task_once_in_both_orders,
            a_keyset_anchor_must_exist_in_the_tenant,
            lock_is_granted_when_free_and_refused_while_held,
            lock_tokens_strictly_increase_across_grants,
            expired_lock_can_be_taken_over_by_another_owner,
            expired_lock_cannot_be_released_by_its_old_owner,
            release_checks_owner_and_token,
            a_typed_claim_merges_its_types_in_queue_order,
            a_claim_names_a_bounded_number_of_task_types,
            renew_extends_ttl_and_keeps_token,
            list_locks_filters_by_tenant_owner_and_expiry,
            cleanup_removes_only_expired_locks,
            releasing_a_workers_locks_spans_tenants,
            locks_are_isolated_by_tenant,
            concurrent_acquires_grant_exactly_one_holder,
            a_forged_release_is_refused_and_the_holder_keeps_the_lock,
            a_forged_renew_is_refused_and_leaves_the_expiry,
            a_proof_belongs_to_one_grant,
            a_grant_without_a_secret_is_released_by_owner_and_token,
            registered_worker_is_active_and_listed,
            status_and_partial_capacity_updates_apply,
            heartbeat_refreshes_age_and_revives_offline_worker,
            mark_stale_takes_only_old_heartbeats_offline,
            task_outcomes_accumulate_worker_stats,
            deregistered_worker_is_gone,
            memory_roundtrip_with_versions,
            memory_list_by_prefix_is_literal_and_scoped,
            last_write_wins_by_timestamp_then_writer,
            compare_and_set_on_version,
            memory_ttl_hides_entry_and_purge_logs_expiry,
            change_log_is_ordered_and_gap_free,
            memory_is_isolated_by_tenant,
            memory_writes_notify_subscribers,
            claim_order_is_priority_then_fifo,
            batch_enqueue_is_all_or_nothing,
            concurrent_claims_never_hand_out_a_task_twice,
            claim_filters_by_task_type_and_tenant,
            completion_requires_the_current_fence,
            failure_retries_with_backoff_then_dead_letters,
            non_retryable_failure_goes_straight_to_dead_letter,
            dead_letter_task_can_be_retried,
            cancelled_task_refuses_its_workers_completion,
            expired_lease_is_requeued_and_next_claim_is_next_attempt,
            task_past_its_deadline_fails_with_timeout,
            killed_workers_task_is_requeued_with_next_attempt,
            task_that_keeps_losing_its_worker_ends_dead,
            lease_renewal_and_heartbeat_extension,
            dependencies_gate_claims_and_pass_outputs,
            dead_dependency_fails_dependents_fast,
            affinity_rules_restrict_claims,
            stats_count_by_state_and_results_are_kept,
            tasks_are_isolated_by_tenant,
            submit_notifies_task_subscribers,
            completion_updates_worker_stats,
            released_claims_return_to_the_queue_uncounted,
            memory_keys_are_listed_in_bounded_pages_without_values,
            each_worker_goes_stale_by_its_own_announced_threshold,
            health_follows_the_workers_own_threshold,
            restart_under_the_same_id_requeues_the_previous_runs_at_once,
            a_replaced_incarnation_cannot_heartbeat_extend_or_update,
            task_priority_range_is_enforced,
            task_max_retries_range_is_enforced,
            task_timeout_range_is_enforced,
            memory_ttl_range_is_enforced,
            memory_version_and_timestamp_ranges_are_enforced,
            lock_ttl_range_is_enforced,
            lease_range_is_enforced,
            the_same_task_id_lives_in_two_tenants,
            dependencies_resolve_only_inside_the_tenant,
            a_forged_registration_is_ignored_and_the_worker_restores_its_record,
            a_replayed_heartbeat_does_not_keep_a_dead_worker_alive,
            a_process_without_the_secret_may_not_claim_in_an_authenticated_fleet,
            tasks_held_by_an_unauthenticated_worker_are_taken_back,
            a_settlement_by_a_process_without_the_secret_is_refused,
            two_secrets_are_accepted_while_the_fleet_changes_its_secret,
            an_admin_listing_pages_across_tenants_by_task_key,
            tenant_settings_roundtrip_and_ranges,
            queued_quota_refuses_the_whole_batch_and_stores_nothing,
            retry_dead_respects_queued_quota,
            submit_rate_is_a_token_bucket_with_retry_after,
            running_quota_caps_claims_fleet_wide,
            memory_key_and_byte_quotas_hold_and_free_on_delete,
            racing_submissions_never_exceed_the_queued_quota,
            claims_alternate_between_tenants_by_weight,
            priority_orders_tasks_within_a_tenant_not_across,
            an_idle_tenant_does_not_bank_credit,
            a_newly_backlogged_tenant_is_served_next_whatever_its_name,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let factory = $factory;
                $crate::conformance::$case(&factory).await;
            }
        )*
    };
}
