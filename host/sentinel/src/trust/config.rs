//! The `trust` section of the host configuration:
//!
//! ```json
//! "trust": {
//!   "requireSignature": true,
//!   "trustedKeys": ["ed25519:3yq...="],
//!   "githubSubmitters": {"associations": ["OWNER", "MEMBER"], "associationTenant": "community",
//!                        "logins": {"alice": "acme"}}
//! }
//! ```
//!
//! `requireSignature` (default `false`): a plugin loads only if a trusted key signed it (its
//! `.wasm` and its `.toml`); `trustedKeys`: the host's keys, at most [`MAX_TRUSTED_KEYS`]. Keys a
//! tenant lists (`tenants.<name>.trustedKeys`) also load plugins, for that tenant only.

use std::collections::BTreeSet;

use anyhow::{anyhow, bail};
use sentinel_github::SubmitterPolicy;
use sentinel_runtime::{PublicKey, SignaturePolicy};
use serde::Deserialize;

use super::MAX_TRUSTED_KEYS;
use crate::tenancy::Tenancy;

/// `trust`, as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrustSection {
    pub require_signature: Option<bool>,
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// On the GitHub store: whose issue-form submissions run, and in which tenant (see
    /// `host/github/README.md`). Default: OWNER, MEMBER and COLLABORATOR, in `default`.
    pub github_submitters: Option<SubmitterPolicy>,
}

/// What the host trusts, resolved.
#[derive(Debug, Clone, Default)]
pub struct TrustSettings {
    /// What the plugin folder loads.
    pub signatures: SignaturePolicy,
    /// Who may submit through GitHub issues (used only by the GitHub store).
    pub github_submitters: SubmitterPolicy,
}

/// Validates the section; `tenancy` contributes the tenants' own keys.
pub fn resolve(section: &TrustSection, tenancy: &Tenancy) -> anyhow::Result<TrustSettings> {
    if section.trusted_keys.len() > MAX_TRUSTED_KEYS {
        bail!("trust.trustedKeys: at most {MAX_TRUSTED_KEYS} keys");
    }
    let mut trusted = section
        .trusted_keys
        .iter()
        .enumerate()
        .map(|(i, k)| PublicKey::parse(k).map_err(|e| anyhow!("trust.trustedKeys[{i}]: {e}")))
        .collect::<anyhow::Result<BTreeSet<_>>>()?;
    let require = section.require_signature.unwrap_or(false);
    let tenant_keys = tenancy.tenant_keys().count();
    if require && trusted.is_empty() && tenant_keys == 0 {
        bail!(
            "trust.requireSignature: no key is trusted, so no plugin could load; add the public key printed by `sentinel plugins keygen` to trust.trustedKeys"
        );
    }
    trusted.extend(tenancy.tenant_keys().cloned());
    let github_submitters = section.github_submitters.clone().unwrap_or_default();
    github_submitters
        .validate()
        .map_err(|e| anyhow!("trust.githubSubmitters: {e}"))?;
    Ok(TrustSettings {
        signatures: SignaturePolicy { require, trusted },
        github_submitters,
    })
}
