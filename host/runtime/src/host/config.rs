//! `wasi:config/store`: the plugin's `[config]` table from its manifest, read-only.

use crate::bindings::executor::wasi::config::store::{Error, Host};
use crate::state::SandboxState;

impl Host for SandboxState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, Error>> {
        Ok(Ok(self.config.get(&key).cloned()))
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, Error>> {
        Ok(Ok(self
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()))
    }
}
