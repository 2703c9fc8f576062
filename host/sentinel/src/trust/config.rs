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
//! The fleet secret (HMAC key authenticating what workers write to a shared store) comes from
//! `SENTINEL_FLEET_SECRET` or `trust.fleetSecretFile`; during a change of secret the old one from
//! `SENTINEL_FLEET_SECRET_PREVIOUS` or `trust.previousFleetSecretFile`. At least 32 bytes each.
//!
//! `requireSignature` (default `false`): a plugin loads only if a trusted key signed it (its
//! `.wasm` and its `.toml`); `trustedKeys`: the host's keys, at most [`MAX_TRUSTED_KEYS`]. Keys a
//! tenant lists (`tenants.<name>.trustedKeys`) also load plugins, for that tenant only.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use sentinel_coord::trust::{FleetKeys, FleetSecret, MAX_SECRET_BYTES};
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
    /// A file holding the fleet secret (at least 32 bytes; `SENTINEL_FLEET_SECRET` wins).
    pub fleet_secret_file: Option<PathBuf>,
    /// During a change of secret: the old one, still accepted (`SENTINEL_FLEET_SECRET_PREVIOUS`
    /// wins).
    pub previous_fleet_secret_file: Option<PathBuf>,
}

/// What the host trusts, resolved.
#[derive(Debug, Clone, Default)]
pub struct TrustSettings {
    /// What the plugin folder loads.
    pub signatures: SignaturePolicy,
    /// Who may submit through GitHub issues (used only by the GitHub store).
    pub github_submitters: SubmitterPolicy,
    /// The fleet secret(s): `None` runs without authenticating workers (fine on one machine).
    pub fleet: Option<FleetKeys>,
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
    let current = secret(
        "SENTINEL_FLEET_SECRET",
        "trust.fleetSecretFile",
        section.fleet_secret_file.as_deref(),
    )?;
    let previous = secret(
        "SENTINEL_FLEET_SECRET_PREVIOUS",
        "trust.previousFleetSecretFile",
        section.previous_fleet_secret_file.as_deref(),
    )?;
    let fleet = match (current, previous) {
        (Some(c), Some(p)) => Some(FleetKeys::new(c).with_previous(p)),
        (Some(c), None) => Some(FleetKeys::new(c)),
        (None, Some(_)) => bail!(
            "SENTINEL_FLEET_SECRET_PREVIOUS / trust.previousFleetSecretFile: a previous fleet secret needs a current one"
        ),
        (None, None) => None,
    };
    Ok(TrustSettings {
        signatures: SignaturePolicy { require, trusted },
        github_submitters,
        fleet,
    })
}

/// A secret from the environment variable `var` or else the file `file`; the error names where
/// it came from, never what it is.
fn secret(var: &str, key: &str, file: Option<&Path>) -> anyhow::Result<Option<FleetSecret>> {
    if let Some(value) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        let bytes = value.into_encoded_bytes();
        return FleetSecret::new(&bytes)
            .map(Some)
            .map_err(|e| anyhow!("{var}: {e}"));
    }
    let Some(path) = file else {
        return Ok(None);
    };
    let bytes = sentinel_runtime::manifest::read_bounded(path, MAX_SECRET_BYTES as u64 + 64)
        .map_err(|e| anyhow!("{key}: reading {}: {e}", path.display()))?;
    FleetSecret::new(&bytes)
        .map(Some)
        .map_err(|e| anyhow!("{key} ({}): {e}", path.display()))
}
