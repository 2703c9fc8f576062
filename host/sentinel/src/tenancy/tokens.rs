//! API tokens: minting, hashing and constant-time lookup.
//!
//! A token is 32 random bytes (`sntl_` + base64url). The configuration keeps only its SHA-256:
//! a token is high-entropy, so a fast hash is what GitHub and others use too (a slow password
//! hash protects guessable secrets; these are not guessable). Lookup compares the presented
//! token's digest with every configured digest in constant time, so neither timing nor the
//! position of a match tells anything about the stored digests. This module never logs a token.

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::principal::Principal;

/// Every token starts with this, so leaked tokens are easy to find with a secret scanner.
pub const TOKEN_PREFIX: &str = "sntl_";

/// Longest bearer token looked at; anything longer is refused without hashing.
pub const MAX_TOKEN_BYTES: usize = 256;

/// A fresh token from the operating system's CSPRNG (via `rand`'s thread RNG, reseeded from it).
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The SHA-256 of `token`, as kept in the configuration.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Hex form of [`digest`].
pub fn digest_hex(token: &str) -> String {
    hex::encode(digest(token))
}

/// Parses a configured digest: exactly 64 hex digits.
pub fn parse_digest(hex_digest: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    (hex_digest.len() == 64 && hex::decode_to_slice(hex_digest, &mut out).is_ok()).then_some(out)
}

/// The configured tokens.
#[derive(Debug, Clone, Default)]
pub struct TokenBook {
    entries: Vec<([u8; 32], Principal)>,
}

impl TokenBook {
    pub fn new(entries: Vec<([u8; 32], Principal)>) -> TokenBook {
        TokenBook { entries }
    }

    /// No tokens configured: authentication is off (a loopback dev host, or an explicit
    /// `--insecure-no-auth`).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The principal `token` belongs to. Every entry is compared, whatever matches.
    pub fn lookup(&self, token: &str) -> Option<&Principal> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let presented = digest(token);
        let mut found = None;
        for (stored, principal) in &self.entries {
            if bool::from(stored.ct_eq(&presented)) {
                found = Some(principal);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::principal::Role;

    #[test]
    fn a_minted_token_is_found_only_by_itself() {
        let a = new_token();
        let b = new_token();
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 43);
        assert_ne!(a, b);
        let book = TokenBook::new(vec![(
            parse_digest(&digest_hex(&a)).unwrap(),
            Principal::new("ci", "acme", Role::Tenant),
        )]);
        assert_eq!(book.lookup(&a).unwrap().tenant, "acme");
        assert!(book.lookup(&b).is_none());
        assert!(book.lookup("").is_none());
        assert!(book.lookup(&"x".repeat(MAX_TOKEN_BYTES + 1)).is_none());
        // The digest itself is not a token.
        assert!(book.lookup(&digest_hex(&a)).is_none());
    }

    #[test]
    fn digests_must_be_64_hex_digits() {
        assert!(parse_digest(&"ab".repeat(32)).is_some());
        assert!(parse_digest(&"ab".repeat(31)).is_none());
        assert!(parse_digest(&"zz".repeat(32)).is_none());
        assert!(parse_digest("sntl_abc").is_none());
    }
}
