//! Plugin signatures: ed25519 over a plugin's component bytes *and* its manifest, in a detached
//! `<name>.sig` file beside the pair.
//!
//! Covering the manifest matters as much as the code: the manifest asks for capabilities, so a
//! manifest edited to ask for more must break the signature. The signed message is a fixed
//! domain tag followed by the SHA-256 of each file, so signing a 200 MB component does not mean
//! holding it twice. Keys are ed25519-dalek's; private keys are PKCS#8 PEM files, public keys the
//! one-line form `ed25519:<base64 of the 32 key bytes>` that goes into a configuration.
//!
//! This module decides whether a signature holds; it never decides what a host trusts (that is
//! [`SignaturePolicy`], given by the host) and never reads a file without a size bound.

use std::collections::BTreeSet;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The file beside `<name>.wasm` that holds its signature.
pub const SIGNATURE_EXTENSION: &str = "sig";

/// A signature file is a few hundred bytes; anything larger is not one.
pub const MAX_SIGNATURE_BYTES: u64 = 4096;

/// Domain separation: these bytes can never be mistaken for another protocol's message.
const DOMAIN: &[u8] = b"sentinel plugin signature v1\n";

const PUBLIC_PREFIX: &str = "ed25519:";

/// A public key in its configuration form, `ed25519:<base64>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(String);

impl PublicKey {
    /// Parses `ed25519:<base64>` (the prefix may be omitted).
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        let text = text.trim();
        let b64 = text.strip_prefix(PUBLIC_PREFIX).unwrap_or(text);
        let bytes = B64
            .decode(b64)
            .map_err(|_| "a public key is `ed25519:` followed by base64".to_string())?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "an ed25519 public key is 32 bytes".to_string())?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| "not a valid ed25519 public key".to_string())?;
        Ok(PublicKey::from_key(&key))
    }

    fn from_key(key: &VerifyingKey) -> PublicKey {
        PublicKey(format!("{PUBLIC_PREFIX}{}", B64.encode(key.as_bytes())))
    }

    fn key(&self) -> VerifyingKey {
        let bytes: [u8; 32] = B64
            .decode(&self.0[PUBLIC_PREFIX.len()..])
            .expect("checked at parse")
            .try_into()
            .expect("checked at parse");
        VerifyingKey::from_bytes(&bytes).expect("checked at parse")
    }

    /// The configuration form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A private signing key. Its `Debug` never shows the key.
pub struct PrivateKey(SigningKey);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({})", self.public())
    }
}

impl PrivateKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> PrivateKey {
        let seed: [u8; 32] = rand::random();
        PrivateKey(SigningKey::from_bytes(&seed))
    }

    /// The PKCS#8 PEM text of the key (what `sentinel plugins keygen` writes).
    pub fn to_pem(&self) -> Result<String, String> {
        self.0
            .to_pkcs8_pem(Default::default())
            .map(|pem| pem.to_string())
            .map_err(|e| format!("encoding the key: {e}"))
    }

    /// Parses a PKCS#8 PEM private key.
    pub fn from_pem(pem: &str) -> Result<PrivateKey, String> {
        SigningKey::from_pkcs8_pem(pem)
            .map(PrivateKey)
            .map_err(|_| "not an ed25519 PKCS#8 PEM private key".to_string())
    }

    /// Reads a PEM key file (bounded).
    pub fn read(path: &Path) -> Result<PrivateKey, String> {
        let bytes = crate::manifest::read_bounded(path, MAX_SIGNATURE_BYTES)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        PrivateKey::from_pem(&String::from_utf8_lossy(&bytes))
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey::from_key(&self.0.verifying_key())
    }

    /// Signs a plugin: the component bytes and the manifest text.
    pub fn sign(&self, manifest: &[u8], wasm: &[u8]) -> SignatureFile {
        let sig = self.0.sign(&message(manifest, wasm));
        SignatureFile {
            algorithm: "ed25519".into(),
            public_key: self.public().0,
            signature: B64.encode(sig.to_bytes()),
        }
    }
}

/// The message a signature covers.
fn message(manifest: &[u8], wasm: &[u8]) -> Vec<u8> {
    let mut m = DOMAIN.to_vec();
    m.extend_from_slice(hex::encode(Sha256::digest(manifest)).as_bytes());
    m.push(b'\n');
    m.extend_from_slice(hex::encode(Sha256::digest(wasm)).as_bytes());
    m.push(b'\n');
    m
}

/// The content of a `<name>.sig` file (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    /// Always `ed25519`.
    pub algorithm: String,
    /// The signer, `ed25519:<base64>`.
    pub public_key: String,
    /// Base64 of the 64 signature bytes.
    pub signature: String,
}

impl SignatureFile {
    /// Parses the JSON text of a signature file.
    pub fn parse(text: &[u8]) -> Result<SignatureFile, String> {
        let file: SignatureFile = serde_json::from_slice(text)
            .map_err(|e| format!("the signature file is not valid: {e}"))?;
        if file.algorithm != "ed25519" {
            return Err(format!(
                "signature algorithm {:?} is not supported (only ed25519)",
                file.algorithm
            ));
        }
        Ok(file)
    }

    /// The JSON text to write.
    pub fn to_text(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("plain strings serialise");
        text.push('\n');
        text
    }

    /// The signer's key if the signature holds for these bytes, else why not.
    pub fn verify(&self, manifest: &[u8], wasm: &[u8]) -> Result<PublicKey, String> {
        let signer = PublicKey::parse(&self.public_key)
            .map_err(|e| format!("the signature's public key: {e}"))?;
        let bytes: [u8; 64] = B64
            .decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| "the signature is not 64 base64-encoded bytes".to_string())?;
        signer
            .key()
            .verify(&message(manifest, wasm), &Signature::from_bytes(&bytes))
            .map_err(|_| {
                "the signature does not match this plugin: its .wasm or .toml changed after signing"
                    .to_string()
            })?;
        Ok(signer)
    }
}

/// What a host trusts: the keys whose signatures it accepts and whether a plugin must carry one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignaturePolicy {
    /// Refuse to load a plugin that is not signed by a trusted key.
    pub require: bool,
    /// Keys whose signatures load a plugin (the host's, and every tenant's own keys).
    pub trusted: BTreeSet<PublicKey>,
}

/// How a plugin's signature stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    /// No `<name>.sig`.
    Unsigned,
    /// A valid signature by this key (trusted or not: the caller's policy decides).
    Signed(PublicKey),
}

impl SignaturePolicy {
    /// Checks a plugin's signature file (if any) against its bytes and this policy: `Err` is
    /// why the plugin must not load. A signature that is present but broken always refuses
    /// (it means the files were altered), whether or not signatures are required.
    pub fn check(
        &self,
        sig: Option<&[u8]>,
        manifest: &[u8],
        wasm: &[u8],
    ) -> Result<SignatureCheck, String> {
        let check = match sig {
            None => SignatureCheck::Unsigned,
            Some(text) => {
                SignatureCheck::Signed(SignatureFile::parse(text)?.verify(manifest, wasm)?)
            }
        };
        if self.require {
            match &check {
                SignatureCheck::Unsigned => {
                    return Err("unsigned: this host requires plugins signed by a trusted key (`sentinel plugins sign`)".into());
                }
                SignatureCheck::Signed(key) if !self.trusted.contains(key) => {
                    return Err(format!("signed by {key}, which this host does not trust"));
                }
                SignatureCheck::Signed(_) => {}
            }
        }
        Ok(check)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &[u8] = b"name = \"echo\"\nkind = \"executor\"\n";
    const WASM: &[u8] = b"\0asm component bytes";

    fn policy(require: bool, keys: &[&PrivateKey]) -> SignaturePolicy {
        SignaturePolicy {
            require,
            trusted: keys.iter().map(|k| k.public()).collect(),
        }
    }

    #[test]
    fn a_signature_verifies_for_the_signed_bytes_only() {
        let key = PrivateKey::generate();
        let sig = key.sign(TOML, WASM).to_text();
        let p = policy(true, &[&key]);
        assert_eq!(
            p.check(Some(sig.as_bytes()), TOML, WASM),
            Ok(SignatureCheck::Signed(key.public()))
        );
        let tampered = p.check(Some(sig.as_bytes()), TOML, b"\0asm other bytes");
        assert!(tampered.unwrap_err().contains("changed after signing"));
        let widened = b"name = \"echo\"\nkind = \"executor\"\n[capabilities]\nscratch = true\n";
        assert!(p.check(Some(sig.as_bytes()), widened, WASM).is_err());
    }

    #[test]
    fn a_required_signature_must_come_from_a_trusted_key() {
        let (trusted, stranger) = (PrivateKey::generate(), PrivateKey::generate());
        let p = policy(true, &[&trusted]);
        assert!(p.check(None, TOML, WASM).unwrap_err().contains("unsigned"));
        let sig = stranger.sign(TOML, WASM).to_text();
        let err = p.check(Some(sig.as_bytes()), TOML, WASM).unwrap_err();
        assert!(err.contains("does not trust"), "{err}");
        // Without the requirement an untrusted but valid signature loads (a tenant may trust it).
        assert!(
            policy(false, &[])
                .check(Some(sig.as_bytes()), TOML, WASM)
                .is_ok()
        );
        assert_eq!(
            policy(false, &[]).check(None, TOML, WASM),
            Ok(SignatureCheck::Unsigned)
        );
    }

    #[test]
    fn a_broken_signature_refuses_even_when_none_is_required() {
        let p = policy(false, &[]);
        assert!(p.check(Some(b"not json"), TOML, WASM).is_err());
        let key = PrivateKey::generate();
        let mut file = key.sign(TOML, WASM);
        file.signature = B64.encode([7u8; 64]);
        assert!(
            p.check(Some(file.to_text().as_bytes()), TOML, WASM)
                .is_err()
        );
        file.algorithm = "rsa".into();
        assert!(
            p.check(Some(file.to_text().as_bytes()), TOML, WASM)
                .is_err()
        );
    }

    #[test]
    fn keys_round_trip_through_their_text_forms() {
        let key = PrivateKey::generate();
        let again = PrivateKey::from_pem(&key.to_pem().unwrap()).unwrap();
        assert_eq!(again.public(), key.public());
        assert_eq!(PublicKey::parse(key.public().as_str()), Ok(key.public()));
        let bare = key
            .public()
            .as_str()
            .trim_start_matches("ed25519:")
            .to_string();
        assert_eq!(PublicKey::parse(&bare), Ok(key.public()));
        assert!(PublicKey::parse("ed25519:AAAA").is_err());
        assert!(PrivateKey::from_pem("-----BEGIN PRIVATE KEY-----\nxx\n").is_err());
        assert!(!format!("{key:?}").contains(&key.to_pem().unwrap()));
    }
}
