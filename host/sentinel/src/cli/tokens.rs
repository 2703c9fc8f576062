//! `sentinel tokens new`: mints a token locally and prints it once, with the configuration entry
//! that holds only its SHA-256. Nothing is sent anywhere and nothing is written to disk.

use super::Output;
use crate::tenancy::tokens::{digest_hex, new_token};

/// Prints a fresh token and its configuration fragment; the exit code.
pub fn new(tenant: &str, admin: bool, name: Option<&str>, output: Output) -> anyhow::Result<i32> {
    crate::config::validate_tenant("--tenant", tenant)?;
    let role = if admin { "admin" } else { "tenant" };
    let name = name.map_or_else(|| format!("{tenant}-{role}"), str::to_string);
    let token = new_token();
    let config = fragment(&name, tenant, role, &digest_hex(&token));
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({ "token": token, "config": config })
        ),
        Output::Table => {
            println!("token (shown once; the host keeps only its SHA-256):\n\n  {token}\n");
            println!("add to the host's JSON configuration (merge into auth.tokens):\n");
            println!(
                "{}",
                serde_json::to_string_pretty(&config).unwrap_or_default()
            );
            println!("\nthen call with: SENTINEL_TOKEN={token} sentinel ...");
        }
    }
    Ok(0)
}

/// `{"auth": {"tokens": [entry]}}`: mergeable into a JSON configuration file.
fn fragment(name: &str, tenant: &str, role: &str, sha256: &str) -> serde_json::Value {
    serde_json::json!({
        "auth": { "tokens": [ { "name": name, "tenant": tenant, "role": role, "sha256": sha256 } ] }
    })
}
