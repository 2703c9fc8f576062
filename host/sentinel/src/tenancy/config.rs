//! The `auth` and `tenants` sections of the host configuration, validated into [`Tenancy`].
//!
//! Tokens appear only as SHA-256 digests: a token in clear (the old `tenants: {token: tenant}`
//! map, or a `token` key) is refused at start with a message saying how to mint one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use sentinel_runtime::{Ceiling, Limits, PublicKey};
use serde::Deserialize;

use super::principal::{Principal, Role};
use super::tokens::{TokenBook, parse_digest};
use super::{Tenancy, TenantPolicy};
use sentinel_coord::model::limits::{
    QUOTA_MAX_QUEUED, QUOTA_MAX_RUNNING, QUOTA_MEMORY_BYTES, QUOTA_MEMORY_KEYS, RATE_BURST,
    RATE_PER_SECOND, Range, TENANT_WEIGHT,
};
use sentinel_coord::model::{RateLimit, TenantQuota};

/// `auth`: who may call the API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthSection {
    /// Hashed tokens (`sentinel tokens new` prints an entry).
    #[serde(default)]
    pub tokens: Vec<TokenSection>,
    /// `admin` (default: an admin token is needed) or `open` (Prometheus without a token).
    pub metrics: Option<String>,
}

/// One token: its digest, the tenant it belongs to and its role.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenSection {
    /// A label for audit logs; default: the tenant and role.
    pub name: Option<String>,
    pub tenant: String,
    /// `tenant` (default) or `admin`.
    pub role: Option<String>,
    /// SHA-256 of the token, 64 hex digits.
    pub sha256: Option<String>,
    /// Present only to refuse it with a useful message: tokens are never kept in clear.
    pub token: Option<String>,
}

/// `tenants.<name>`: what one tenant may do.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantSection {
    /// Share of the fleet under contention, 1..=1000 (default 1).
    pub weight: Option<u32>,
    /// Task types (plugins) it may submit; default: all.
    pub task_types: Option<Vec<String>>,
    #[serde(default)]
    pub quota: QuotaSection,
    /// Its sandbox ceiling: a task gets manifest ∩ host policy ∩ this.
    #[serde(default)]
    pub sandbox: CeilingSection,
    /// Plugin signing keys (`ed25519:<base64>`) this tenant trusts: when set, its tasks run
    /// only on plugins signed by one of them. Default: whatever the host loads.
    pub trusted_keys: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuotaSection {
    pub max_queued: Option<u64>,
    pub max_running: Option<u64>,
    pub submit_rate: Option<RateSection>,
    pub memory_keys: Option<u64>,
    pub memory_bytes: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateSection {
    pub per_second: u32,
    /// Default: one second's worth.
    pub burst: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CeilingSection {
    pub memory_mb: Option<u64>,
    pub cpu_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub output_kb: Option<u64>,
    pub log_kb: Option<u64>,
    pub scratch_mb: Option<u64>,
    pub outbound_hosts: Option<Vec<String>>,
    pub read_dirs: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    /// Shared memory allowed (default true: the host policy and manifest decide).
    pub memory: Option<bool>,
    /// Scratch directory allowed (default true: the host policy and manifest decide).
    pub scratch: Option<bool>,
}

/// Validates the sections. `check_id` is the host's identifier rule (tenant names).
pub fn resolve(
    auth: &AuthSection,
    tenants: &BTreeMap<String, serde_json::Value>,
    check_id: impl Fn(&str, &str) -> anyhow::Result<()>,
) -> anyhow::Result<Tenancy> {
    let mut entries = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, t) in auth.tokens.iter().enumerate() {
        let at = format!("auth.tokens[{i}]");
        if t.token.is_some() {
            bail!(
                "{at}.token: tokens are never kept in clear in the configuration; keep only its SHA-256 (`sentinel tokens new --tenant {}` prints a fresh token and the entry to paste)",
                t.tenant
            );
        }
        check_id(&format!("{at}.tenant"), &t.tenant)?;
        let role = match t.role.as_deref() {
            None => Role::Tenant,
            Some(r) => Role::parse(r)
                .with_context(|| format!("{at}.role: {r:?} is not a role; use tenant or admin"))?,
        };
        let Some(hex) = &t.sha256 else {
            bail!("{at}.sha256: missing; `sentinel tokens new` prints the entry to paste");
        };
        let digest = parse_digest(hex).with_context(|| {
            format!("{at}.sha256: must be the token's SHA-256 as 64 hex digits (a token in clear is refused; `sentinel tokens new` prints the entry)")
        })?;
        if !seen.insert(digest) {
            bail!("{at}.sha256: the same token is configured twice");
        }
        let name = t
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", t.tenant, role.as_str()));
        if name.is_empty() || name.len() > 128 {
            bail!("{at}.name: must be 1 to 128 bytes");
        }
        entries.push((digest, Principal::new(&name, &t.tenant, role)));
    }
    let metrics_open = match auth.metrics.as_deref() {
        None | Some("admin") => false,
        Some("open") => true,
        Some(other) => bail!("auth.metrics: {other:?}; use admin or open"),
    };
    let mut policies = BTreeMap::new();
    for (name, value) in tenants {
        check_id(&format!("tenants.{name}"), name)?;
        if value.is_string() {
            bail!(
                "tenants.{name}: this looks like the old `token: tenant` map; tokens are never kept in clear. Mint one with `sentinel tokens new --tenant TENANT` and paste the printed entry into auth.tokens; `tenants.<name>` now holds that tenant's policy"
            );
        }
        let section: TenantSection = serde_path_to_error::deserialize(value.clone())
            .map_err(|e| anyhow::anyhow!("tenants.{name}.{}: {}", e.path(), e.inner()))?;
        policies.insert(name.clone(), policy(name, &section)?);
    }
    Ok(Tenancy {
        tokens: TokenBook::new(entries),
        metrics_open,
        tenants: policies,
    })
}

fn policy(name: &str, s: &TenantSection) -> anyhow::Result<TenantPolicy> {
    let at = |k: &str| format!("tenants.{name}.{k}");
    // The store's ranges, named as the configuration spells the key.
    let check = |k: &str, range: &Range, v: Option<u64>| -> anyhow::Result<Option<u64>> {
        if let Some(v) = v {
            range.check_u64(v).map_err(|e| {
                anyhow::anyhow!(
                    "{}: {v} is out of range: allowed {}..={}",
                    at(k),
                    e.min,
                    e.max
                )
            })?;
        }
        Ok(v)
    };
    let weight = check("weight", &TENANT_WEIGHT, s.weight.map(u64::from))?.unwrap_or(1) as u32;
    let q = &s.quota;
    let submit_rate = match &q.submit_rate {
        None => None,
        Some(r) => {
            let per_second = r.per_second;
            let burst = r.burst.unwrap_or(per_second);
            check(
                "quota.submitRate.perSecond",
                &RATE_PER_SECOND,
                Some(per_second.into()),
            )?;
            check("quota.submitRate.burst", &RATE_BURST, Some(burst.into()))?;
            Some(RateLimit { per_second, burst })
        }
    };
    let quota = TenantQuota {
        max_queued: check("quota.maxQueued", &QUOTA_MAX_QUEUED, q.max_queued)?,
        max_running: check("quota.maxRunning", &QUOTA_MAX_RUNNING, q.max_running)?,
        submit_rate,
        memory_keys: check("quota.memoryKeys", &QUOTA_MEMORY_KEYS, q.memory_keys)?,
        memory_bytes: check("quota.memoryBytes", &QUOTA_MEMORY_BYTES, q.memory_bytes)?,
    };
    let c = &s.sandbox;
    let positive = |k: &str, v: Option<u64>| -> anyhow::Result<Option<u64>> {
        match v {
            Some(0) => bail!("{}: must be greater than 0", at(&format!("sandbox.{k}"))),
            v => Ok(v),
        }
    };
    let u = Limits::UNBOUNDED;
    let limits = Limits {
        memory_bytes: positive("memoryMb", c.memory_mb)?
            .map_or(u.memory_bytes, |mb| mb.saturating_mul(1 << 20)),
        cpu: positive("cpuMs", c.cpu_ms)?.map_or(u.cpu, Duration::from_millis),
        timeout: positive("timeoutMs", c.timeout_ms)?.map_or(u.timeout, Duration::from_millis),
        output_bytes: c
            .output_kb
            .map_or(u.output_bytes, |kb| kb.saturating_mul(1 << 10)),
        log_bytes: c
            .log_kb
            .map_or(u.log_bytes, |kb| kb.saturating_mul(1 << 10)),
        scratch_bytes: c
            .scratch_mb
            .map_or(u.scratch_bytes, |mb| mb.saturating_mul(1 << 20)),
        ..u
    };
    let task_types = s
        .task_types
        .as_ref()
        .map(|t| t.iter().cloned().collect::<BTreeSet<_>>());
    let trusted_keys = match &s.trusted_keys {
        None => None,
        Some(keys) if keys.len() > crate::trust::MAX_TRUSTED_KEYS => bail!(
            "{}: at most {} keys",
            at("trustedKeys"),
            crate::trust::MAX_TRUSTED_KEYS
        ),
        Some(keys) => Some(
            keys.iter()
                .enumerate()
                .map(|(i, k)| {
                    PublicKey::parse(k)
                        .map_err(|e| anyhow!("{}: {e}", at(&format!("trustedKeys[{i}]"))))
                })
                .collect::<anyhow::Result<BTreeSet<_>>>()?,
        ),
    };
    Ok(TenantPolicy {
        weight,
        task_types,
        trusted_keys,
        quota,
        ceiling: Ceiling {
            scratch: c.scratch.unwrap_or(true),
            memory: c.memory.unwrap_or(true),
            read_dirs: c.read_dirs.clone(),
            env: c.env.clone(),
            outbound_hosts: c.outbound_hosts.clone(),
            limits,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::tokens::{digest_hex, new_token};

    fn ids(key: &str, name: &str) -> anyhow::Result<()> {
        crate::config::validate_tenant(key, name)
    }

    fn parse(json: &str) -> anyhow::Result<Tenancy> {
        #[derive(Deserialize)]
        struct Both {
            #[serde(default)]
            auth: AuthSection,
            #[serde(default)]
            tenants: BTreeMap<String, serde_json::Value>,
        }
        let b: Both = serde_json::from_str(json)?;
        resolve(&b.auth, &b.tenants, ids)
    }

    #[test]
    fn a_token_in_clear_is_refused_at_start() {
        let err = parse(r#"{"tenants": {"0123456789abcdef0123": "acme"}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("never kept in clear"), "{err}");
        let err = parse(r#"{"auth": {"tokens": [{"tenant": "acme", "token": "sntl_x"}]}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.tokens[0].token"), "{err}");
        let err = parse(r#"{"auth": {"tokens": [{"tenant": "acme", "sha256": "sntl_abc"}]}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.tokens[0].sha256"), "{err}");
    }

    #[test]
    fn a_worked_configuration_resolves() {
        let token = new_token();
        let json = format!(
            r#"{{"auth": {{"tokens": [{{"name": "ops", "tenant": "acme", "role": "admin", "sha256": "{}"}}], "metrics": "open"}},
                "tenants": {{"acme": {{"weight": 3, "taskTypes": ["echo"],
                    "quota": {{"maxQueued": 100, "submitRate": {{"perSecond": 5}}}},
                    "sandbox": {{"memoryMb": 32, "outboundHosts": [], "memory": false}}}}}}}}"#,
            digest_hex(&token)
        );
        let t = parse(&json).unwrap();
        assert!(t.metrics_open);
        let p = t.tokens.lookup(&token).unwrap();
        assert!(p.is_admin() && p.name == "ops");
        let acme = &t.tenants["acme"];
        assert_eq!(acme.weight, 3);
        assert_eq!(acme.quota.submit_rate.unwrap().burst, 5);
        assert!(!acme.ceiling.memory && acme.ceiling.scratch);
        assert_eq!(acme.ceiling.limits.memory_bytes, 32 << 20);
        assert!(t.may_submit("acme", "echo") && !t.may_submit("acme", "sleep"));
        assert!(t.may_submit("other", "sleep"));
    }

    #[test]
    fn out_of_range_policies_are_refused_naming_the_key() {
        for (json, key) in [
            (r#"{"tenants": {"a": {"weight": 0}}}"#, "tenants.a.weight"),
            (
                r#"{"tenants": {"a": {"quota": {"submitRate": {"perSecond": 0}}}}}"#,
                "perSecond",
            ),
            (
                r#"{"tenants": {"a": {"sandbox": {"cpuMs": 0}}}}"#,
                "sandbox.cpuMs",
            ),
            (r#"{"tenants": {"a": {"sandbox": {"cpus": 1}}}}"#, "cpus"),
            (r#"{"tenants": {"__sentinel": {}}}"#, "reserved"),
            (
                r#"{"auth": {"tokens": [{"tenant": "a", "role": "root", "sha256": "00"}]}}"#,
                "role",
            ),
        ] {
            let err = format!("{:#}", parse(json).unwrap_err());
            assert!(err.contains(key), "{json}: {err}");
        }
    }
}
