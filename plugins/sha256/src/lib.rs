//! `sha256`: hashes a text (task type `sha256`).
//!
//! Payload `{"data": "<text>"}`; output `{"sha256": "<lowercase hex>"}`, the SHA-256 of
//! the UTF-8 bytes of `data`. Any other payload is a non-retryable error.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256 as Hasher};

use sentinel_sdk::{Executor, Output, Task, TaskError};

#[derive(Deserialize)]
struct Input {
    data: String,
}

#[derive(Serialize)]
struct Digested {
    sha256: String,
}

/// Lowercase hex of the SHA-256 of `data`'s UTF-8 bytes.
pub fn sha256_hex(data: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Hasher::digest(data.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(HEX[usize::from(byte >> 4)] as char);
        hex.push(HEX[usize::from(byte & 0xf)] as char);
    }
    hex
}

/// The `sha256` executor.
pub struct Sha256;

impl Executor for Sha256 {
    fn run(task: Task) -> Result<Output, TaskError> {
        let input: Input = task.json()?;
        Output::json(&Digested {
            sha256: sha256_hex(&input.data),
        })
    }
}

sentinel_sdk::export_executor!(Sha256);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let out = Sha256::run(Task::new("sha256", br#"{"data":"abc"}"#.to_vec())).unwrap();
        assert_eq!(
            out.as_bytes(),
            br#"{"sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}"#
        );
    }

    #[test]
    fn invalid_payloads_are_fatal() {
        for bad in [&b"nope"[..], br#"{"data": 3}"#, br#"{}"#] {
            let err = Sha256::run(Task::new("sha256", bad.to_vec())).unwrap_err();
            assert!(!err.retryable, "{err}");
            assert!(err.message.contains("invalid payload"), "{err}");
        }
    }
}
