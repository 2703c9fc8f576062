//! Tenancy: who a caller is (hashed tokens → principals with a role), what each tenant may do
//! (task types, a sandbox ceiling, a weight and quotas) and the audit trail of admin actions
//! and refused access.
//!
//! This module decides and declares; it never stores. Quotas and weights are handed to the
//! store (`sentinel_coord`'s tenant settings), which enforces them fleet-wide in the same
//! transaction as each write; the sandbox ceiling is applied by the worker when it runs a task.

pub mod audit;
pub mod config;
pub mod principal;
pub mod tokens;

use std::collections::{BTreeMap, BTreeSet};

use sentinel_coord::model::{TenantQuota, TenantSettings};
use sentinel_runtime::{Ceiling, PublicKey};

pub use principal::{Principal, Role};
pub use tokens::TokenBook;

/// Everything the host knows about tenants, from its configuration.
#[derive(Debug, Clone, Default)]
pub struct Tenancy {
    /// Empty: authentication is off (every caller is an admin of `default`).
    pub tokens: TokenBook,
    /// `GET /metrics` without a token.
    pub metrics_open: bool,
    /// Configured tenants; any other tenant has no quota, weight 1, every task type and no
    /// ceiling beyond the host policy.
    pub tenants: BTreeMap<String, TenantPolicy>,
}

/// One tenant's policy.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantPolicy {
    pub weight: u32,
    /// `None`: every task type.
    pub task_types: Option<BTreeSet<String>>,
    /// Enforced by the store (`TenantStore`), fleet-wide.
    pub quota: TenantQuota,
    pub ceiling: Ceiling,
    /// `Some`: its tasks run only on plugins signed by one of these keys.
    pub trusted_keys: Option<BTreeSet<PublicKey>>,
}

impl TenantPolicy {
    /// What the store needs to know: weight and quotas.
    pub fn settings(&self, tenant: &str) -> TenantSettings {
        TenantSettings::new(tenant)
            .with_weight(self.weight)
            .with_quota(self.quota)
    }
}

static NO_CEILING: Ceiling = Ceiling::NONE;

impl Tenancy {
    /// Whether callers must present a token.
    pub fn auth_enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Whether `tenant` may submit (and run) tasks of `task_type`.
    pub fn may_submit(&self, tenant: &str, task_type: &str) -> bool {
        self.tenants
            .get(tenant)
            .and_then(|p| p.task_types.as_ref())
            .is_none_or(|types| types.contains(task_type))
    }

    /// Whether `tenant`'s tasks may run on a plugin signed by `signer` (`None`: unsigned). The
    /// host's own signature policy has already decided what loads at all.
    pub fn trusts(&self, tenant: &str, signer: Option<&PublicKey>) -> bool {
        match self
            .tenants
            .get(tenant)
            .and_then(|p| p.trusted_keys.as_ref())
        {
            None => true,
            Some(keys) => signer.is_some_and(|k| keys.contains(k)),
        }
    }

    /// Every key some tenant trusts (a plugin signed by one loads even when the host requires
    /// signatures by its own keys: that tenant may run it).
    pub fn tenant_keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.tenants
            .values()
            .filter_map(|p| p.trusted_keys.as_ref())
            .flatten()
    }

    /// The sandbox ceiling of `tenant`'s tasks.
    pub fn ceiling(&self, tenant: &str) -> &Ceiling {
        self.tenants.get(tenant).map_or(&NO_CEILING, |p| &p.ceiling)
    }
}
