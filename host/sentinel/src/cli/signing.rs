//! `sentinel plugins keygen | sign | verify`: ed25519 plugin signatures, all local (nothing is
//! sent anywhere). A signature covers the component bytes and the manifest beside them and is
//! written as `<name>.sig` next to `<name>.wasm`, where the plugin folder looks for it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sentinel_runtime::signature::{MAX_SIGNATURE_BYTES, SIGNATURE_EXTENSION, SignatureFile};
use sentinel_runtime::{PrivateKey, PublicKey};

use super::Output;

/// Writes a fresh private key to `out` (mode 0600, refusing to overwrite) and `out.pub`;
/// prints the public key and the configuration fragment that trusts it.
pub fn keygen(out: &Path, output: Output) -> anyhow::Result<i32> {
    let key = PrivateKey::generate();
    let pem = key.to_pem().map_err(anyhow::Error::msg)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(out).with_context(|| {
        format!(
            "creating {} (an existing key is never overwritten)",
            out.display()
        )
    })?;
    file.write_all(pem.as_bytes())?;
    let public = key.public();
    let pub_path = PathBuf::from(format!("{}.pub", out.display()));
    std::fs::write(&pub_path, format!("{public}\n"))
        .with_context(|| format!("writing {}", pub_path.display()))?;
    let config = serde_json::json!({ "trust": { "requireSignature": true, "trustedKeys": [public.as_str()] } });
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({ "private_key_file": out, "public_key": public.as_str(), "config": config })
        ),
        Output::Table => {
            println!(
                "private key: {} (keep it secret; it signs plugins)",
                out.display()
            );
            println!("public key:  {public}  (also in {})\n", pub_path.display());
            println!("to trust it, merge into the host's JSON configuration:\n");
            println!(
                "{}",
                serde_json::to_string_pretty(&config).unwrap_or_default()
            );
        }
    }
    Ok(0)
}

/// `FILE` is `<name>.wasm` or `<name>.toml`: the pair's three paths.
fn pair(file: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (
        file.with_extension("wasm"),
        file.with_extension("toml"),
        file.with_extension(SIGNATURE_EXTENSION),
    )
}

fn read_pair(file: &Path) -> anyhow::Result<(Vec<u8>, Vec<u8>, PathBuf)> {
    let (wasm_path, toml_path, sig_path) = pair(file);
    let wasm = sentinel_runtime::manifest::read_bounded(
        &wasm_path,
        sentinel_runtime::manifest::MAX_WASM_BYTES,
    )
    .with_context(|| format!("reading {}", wasm_path.display()))?;
    let toml = sentinel_runtime::manifest::read_manifest_text(&toml_path).with_context(|| {
        format!(
            "reading {} (the manifest is signed too)",
            toml_path.display()
        )
    })?;
    Ok((wasm, toml.into_bytes(), sig_path))
}

/// Signs `<name>.wasm` with its `<name>.toml`, writing `<name>.sig`.
pub fn sign(key_path: &Path, file: &Path, output: Output) -> anyhow::Result<i32> {
    let key = PrivateKey::read(key_path).map_err(anyhow::Error::msg)?;
    let (wasm, toml, sig_path) = read_pair(file)?;
    let sig = key.sign(&toml, &wasm);
    std::fs::write(&sig_path, sig.to_text())
        .with_context(|| format!("writing {}", sig_path.display()))?;
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({ "signature_file": sig_path, "public_key": sig.public_key })
        ),
        Output::Table => println!("signed by {}: wrote {}", sig.public_key, sig_path.display()),
    }
    Ok(0)
}

/// Checks `<name>.sig` against the pair and the expected key (a key or a `.pub` file); exit
/// code 0 if it holds, 1 (with the reason) if not.
pub fn verify(pubkey: &str, file: &Path, output: Output) -> anyhow::Result<i32> {
    let expected = match PublicKey::parse(pubkey) {
        Ok(key) => key,
        Err(_) => {
            let text =
                sentinel_runtime::manifest::read_bounded(Path::new(pubkey), MAX_SIGNATURE_BYTES)
                    .with_context(|| {
                        format!("--pubkey {pubkey:?} is neither a public key nor a readable file")
                    })?;
            PublicKey::parse(&String::from_utf8_lossy(&text))
                .map_err(|e| anyhow::anyhow!("--pubkey {pubkey}: {e}"))?
        }
    };
    let (wasm, toml, sig_path) = read_pair(file)?;
    let verdict = match sentinel_runtime::manifest::read_bounded(&sig_path, MAX_SIGNATURE_BYTES) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("unsigned: {} does not exist", sig_path.display()))
        }
        Err(e) => bail!("reading {}: {e}", sig_path.display()),
        Ok(text) => SignatureFile::parse(&text)
            .and_then(|s| s.verify(&toml, &wasm))
            .and_then(|signer| {
                if signer == expected {
                    Ok(signer)
                } else {
                    Err(format!("signed by {signer}, not by {expected}"))
                }
            }),
    };
    let ok = verdict.is_ok();
    match output {
        Output::Json => println!(
            "{}",
            match &verdict {
                Ok(signer) => serde_json::json!({ "valid": true, "signed_by": signer.as_str() }),
                Err(why) => serde_json::json!({ "valid": false, "error": why }),
            }
        ),
        Output::Table => match &verdict {
            Ok(signer) => println!("valid: {} is signed by {signer}", file.display()),
            Err(why) => eprintln!("invalid: {why}"),
        },
    }
    Ok(if ok { 0 } else { 1 })
}
