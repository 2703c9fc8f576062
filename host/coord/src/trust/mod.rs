//! Fleet authentication: a secret shared by the fleet's processes (never by the store) and the
//! HMAC-SHA256 seals made with it over what a worker writes that others act on.
//!
//! The store is shared and passive: anyone who can write to it can write any row. What the
//! secret buys is that nobody *believes* a row the fleet did not write: readers verify seals and
//! ignore what fails (see [`SealedStore`]). A seal is an HMAC over a canonical encoding (a domain
//! tag, then each field length-prefixed) that names the store it was made for, so a record copied
//! from another fleet's store, or an old heartbeat written again, does not verify as current.
//!
//! Two secrets may be valid at once ([`FleetKeys::with_previous`]) so a fleet can change its
//! secret without a stop: seal with the new one, accept both, then drop the old one.
//!
//! This module never logs or formats a secret: [`FleetSecret`]'s `Debug` is redacted.

mod seal;
mod sealed;

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use seal::WorkerSeal;
pub use sealed::{RejectHook, SealedStore};

type HmacSha256 = Hmac<Sha256>;

/// Shortest secret accepted: 32 bytes, the HMAC-SHA256 block's worth of guessing.
pub const MIN_SECRET_BYTES: usize = 32;
/// Longest secret accepted.
pub const MAX_SECRET_BYTES: usize = 4096;

/// A fleet secret. Its `Debug` never shows it; nothing in Sentinel prints it.
#[derive(Clone)]
pub struct FleetSecret(Vec<u8>);

impl std::fmt::Debug for FleetSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FleetSecret(<redacted>)")
    }
}

impl FleetSecret {
    /// The secret's bytes (surrounding whitespace, e.g. a file's trailing newline, removed),
    /// or why they are not a usable secret. The message never contains the secret.
    pub fn new(bytes: &[u8]) -> Result<FleetSecret, String> {
        let text = bytes.trim_ascii();
        if text.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "a fleet secret must be at least {MIN_SECRET_BYTES} bytes (it is {}); generate one with `openssl rand -hex 32`",
                text.len()
            ));
        }
        if text.len() > MAX_SECRET_BYTES {
            return Err(format!(
                "a fleet secret must be at most {MAX_SECRET_BYTES} bytes"
            ));
        }
        Ok(FleetSecret(text.to_vec()))
    }
}

/// The secrets a process seals with and accepts.
#[derive(Debug, Clone)]
pub struct FleetKeys {
    current: FleetSecret,
    previous: Option<FleetSecret>,
}

impl FleetKeys {
    pub fn new(current: FleetSecret) -> FleetKeys {
        FleetKeys {
            current,
            previous: None,
        }
    }

    /// Also accepts seals made with `previous` (during a change of secret).
    pub fn with_previous(mut self, previous: FleetSecret) -> FleetKeys {
        self.previous = Some(previous);
        self
    }

    /// The seal of `message` with the current secret, hex.
    pub fn seal(&self, message: &Canonical) -> String {
        hex_encode(&mac(&self.current, message))
    }

    /// Whether `seal` is `message`'s seal under the current or the previous secret (compared in
    /// constant time).
    pub fn verify(&self, message: &Canonical, seal: &str) -> bool {
        let Some(tag) = hex_decode(seal) else {
            return false;
        };
        let check = |secret: &FleetSecret| {
            let mut m = HmacSha256::new_from_slice(&secret.0).expect("HMAC takes any key length");
            m.update(&message.0);
            m.verify_slice(&tag).is_ok()
        };
        check(&self.current) || self.previous.as_ref().is_some_and(check)
    }
}

fn mac(secret: &FleetSecret, message: &Canonical) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(&secret.0).expect("HMAC takes any key length");
    m.update(&message.0);
    m.finalize().into_bytes().to_vec()
}

fn hex_encode(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// A seal is 32 bytes; anything else is not one (and is not worth decoding).
fn hex_decode(text: &str) -> Option<Vec<u8>> {
    (text.len() == 64).then(|| hex::decode(text).ok()).flatten()
}

/// An unambiguous byte encoding of a sealed record: a domain tag, then every field as a 4-byte
/// big-endian length and its bytes. Two different field lists never encode alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical(Vec<u8>);

impl Canonical {
    /// Starts a message for `domain` (e.g. `sentinel/worker/v1`) in the store `store_id`.
    pub fn new(domain: &str, store_id: &str) -> Canonical {
        Canonical(Vec::with_capacity(256))
            .field(domain.as_bytes())
            .field(store_id.as_bytes())
    }

    pub fn field(mut self, bytes: &[u8]) -> Canonical {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(&bytes[..len as usize]);
        self
    }

    pub fn text(self, s: &str) -> Canonical {
        self.field(s.as_bytes())
    }

    pub fn num(self, n: u64) -> Canonical {
        self.field(&n.to_be_bytes())
    }

    pub fn int(self, n: i64) -> Canonical {
        self.field(&n.to_be_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(b: u8) -> FleetSecret {
        FleetSecret::new(&[b'a' + b; 40]).unwrap()
    }

    #[test]
    fn a_seal_verifies_only_for_its_message_and_secret() {
        let keys = FleetKeys::new(secret(0));
        let m = Canonical::new("d", "store").text("w1").num(7);
        let s = keys.seal(&m);
        assert!(keys.verify(&m, &s));
        assert!(!keys.verify(&Canonical::new("d", "store").text("w1").num(8), &s));
        assert!(!keys.verify(&Canonical::new("d", "other").text("w1").num(7), &s));
        assert!(!FleetKeys::new(secret(1)).verify(&m, &s));
        assert!(!keys.verify(&m, "zz"));
        assert!(!keys.verify(&m, &s[..62]));
    }

    #[test]
    fn fields_never_run_into_each_other() {
        let a = Canonical::new("d", "s").text("ab").text("c");
        let b = Canonical::new("d", "s").text("a").text("bc");
        assert_ne!(a, b);
    }

    #[test]
    fn during_a_change_of_secret_both_verify() {
        let (old, new) = (secret(0), secret(1));
        let m = Canonical::new("d", "s").text("x");
        let by_old = FleetKeys::new(old.clone()).seal(&m);
        let by_new = FleetKeys::new(new.clone()).seal(&m);
        let changing = FleetKeys::new(new.clone()).with_previous(old);
        assert!(changing.verify(&m, &by_old) && changing.verify(&m, &by_new));
        assert!(!FleetKeys::new(new).verify(&m, &by_old));
    }

    #[test]
    fn short_secrets_are_refused_and_never_echoed() {
        let err = FleetSecret::new(b"hunter2-hunter2").unwrap_err();
        assert!(
            err.contains("at least 32") && !err.contains("hunter2"),
            "{err}"
        );
        assert!(FleetSecret::new(&[b'x'; 5000]).is_err());
        let ok = FleetSecret::new(format!("{}\n", "k".repeat(32)).as_bytes()).unwrap();
        assert_eq!(format!("{ok:?}"), "FleetSecret(<redacted>)");
    }
}
