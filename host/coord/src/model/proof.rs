//! Holder proofs: the secret a lock's holder keeps so that only it can release or renew the
//! grant. The owner id and fencing token of every lock are visible to anyone who lists locks;
//! the secret is not. The store keeps only its SHA-256 digest, so reading the store does not
//! reveal it either. This module must never log, serialise or format a secret.

use sha2::{Digest, Sha256};

/// A holder's secret: 32 random bytes, hex-encoded. Its `Debug` is redacted and it is never
/// serialised (fields holding it are `#[serde(skip)]`).
#[derive(Clone, PartialEq, Eq)]
pub struct HolderSecret(String);

impl HolderSecret {
    /// A fresh secret from the operating system's random source.
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self(hex::encode(bytes))
    }

    /// The digest the store keeps: lowercase hex SHA-256 of the secret.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// Whether this secret is the one whose digest is `digest`. Compares digests of a 256-bit
    /// random value, so the comparison's timing reveals nothing useful.
    pub fn proves(&self, digest: &str) -> bool {
        self.digest() == digest
    }
}

impl std::fmt::Debug for HolderSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HolderSecret(<redacted>)")
    }
}

/// Whether a release or renew presenting `presented` may act on a grant stored with `stored`:
/// a grant made without a secret (an older client, or a backend row from before holder proofs)
/// accepts any caller that names its owner and token; a grant made with one demands it.
pub fn holder_proven(stored: Option<&str>, presented: Option<&HolderSecret>) -> bool {
    match stored {
        None => true,
        Some(digest) => presented.is_some_and(|s| s.proves(digest)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_proves_only_its_own_digest_and_never_prints() {
        let a = HolderSecret::generate();
        let b = HolderSecret::generate();
        assert_ne!(a, b);
        assert!(a.proves(&a.digest()));
        assert!(!b.proves(&a.digest()));
        assert!(holder_proven(None, None));
        assert!(holder_proven(Some(&a.digest()), Some(&a)));
        assert!(!holder_proven(Some(&a.digest()), None));
        assert!(!holder_proven(Some(&a.digest()), Some(&b)));
        assert_eq!(format!("{a:?}"), "HolderSecret(<redacted>)");
        assert!(!a.digest().contains(&a.0));
    }
}
