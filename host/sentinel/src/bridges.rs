//! Adapters between the sandbox runtime and the coordination layer.
//!
//! The two crates never depend on each other; these adapters are the only place where a
//! runtime seam (shared memory, strategies) is implemented with coordination machinery.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use sentinel_coord::Store;
use sentinel_coord::balancer::{LeastLoaded, Strategy, TaskInfo, WorkerView};
use sentinel_coord::model::{HealthState, MemoryWrite, WorkerStatus, WriteOutcome};
use sentinel_runtime::{KvBackend, KvError, Runtime, StrategyPlugin};

/// Plugin shared memory (`wasi:keyvalue`) stored as coordination memory: bucket = namespace
/// of the task's tenant. Values that are JSON are stored as JSON (so operators and other
/// workers read them as such); other bytes are wrapped as base64.
pub struct StoreKv {
    pub store: Arc<dyn Store>,
    pub writer: String,
}

const BYTES_KEY: &str = "$bytes_b64";

fn encode(value: &[u8]) -> serde_json::Value {
    match serde_json::from_slice::<serde_json::Value>(value) {
        Ok(v) if !is_wrapped(&v) => v,
        _ => {
            serde_json::json!({ BYTES_KEY: base64::engine::general_purpose::STANDARD.encode(value) })
        }
    }
}

fn is_wrapped(v: &serde_json::Value) -> bool {
    v.as_object()
        .is_some_and(|o| o.len() == 1 && o.contains_key(BYTES_KEY))
}

fn decode(value: &serde_json::Value) -> Vec<u8> {
    if is_wrapped(value) {
        if let Some(b) = value[BYTES_KEY]
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        {
            return b;
        }
    }
    serde_json::to_vec(value).unwrap_or_default()
}

fn other(e: impl std::fmt::Display) -> KvError {
    KvError::Other(e.to_string())
}

#[async_trait]
impl KvBackend for StoreKv {
    async fn get(&self, tenant: &str, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let entry = self
            .store
            .memory_get(tenant, bucket, key)
            .await
            .map_err(other)?;
        Ok(entry.map(|e| decode(&e.value)))
    }

    async fn set(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        value: Vec<u8>,
    ) -> Result<(), KvError> {
        let write = MemoryWrite {
            tenant: tenant.into(),
            namespace: bucket.into(),
            key: key.into(),
            value: encode(&value),
            writer: self.writer.clone(),
            timestamp: None,
            ttl_ms: None,
            expected_version: None,
        };
        match self.store.memory_set(&write).await.map_err(other)? {
            WriteOutcome::Written(_) => Ok(()),
            outcome => Err(KvError::Other(format!("write not applied: {outcome:?}"))),
        }
    }

    async fn delete(&self, tenant: &str, bucket: &str, key: &str) -> Result<(), KvError> {
        self.store
            .memory_delete(tenant, bucket, key, &self.writer)
            .await
            .map_err(other)?;
        Ok(())
    }

    async fn list_keys(
        &self,
        tenant: &str,
        bucket: &str,
        cursor: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), KvError> {
        // One page past the cursor (plus one key to know whether there is a next page), without
        // loading any value.
        let page = (sentinel_runtime::services::LIST_PAGE + 1).min(u32::MAX as usize) as u32;
        let keys = self
            .store
            .memory_list_keys(tenant, bucket, "", cursor.as_deref(), page)
            .await
            .map_err(other)?;
        Ok(sentinel_runtime::services::page_after(
            keys.into_iter(),
            cursor.as_deref(),
        ))
    }
}

/// A WASM strategy plugin behind the coordination layer's `Strategy` seam.
///
/// The seam is synchronous (strategies are pure and quick); the sandbox is async, so the call
/// is driven on the current multi-threaded runtime with `block_in_place`. Any sandbox failure
/// (trap, timeout, out-of-range index) falls back to the built-in least-loaded strategy.
pub struct WasmStrategy {
    pub name: String,
    pub plugin: Arc<StrategyPlugin>,
    pub runtime: Arc<Runtime>,
}

impl Strategy for WasmStrategy {
    fn name(&self) -> &str {
        &self.name
    }

    fn select(&self, task: &TaskInfo, workers: &[WorkerView]) -> Option<usize> {
        let wit_task = sentinel_runtime::Task {
            id: task.id.clone(),
            task_type: task.task_type.clone(),
            tenant: task.tenant.clone(),
            priority: task.priority,
            attempt: 1,
            payload: Vec::new(),
            metadata: task
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let views: Vec<sentinel_runtime::WorkerView> = workers.iter().map(to_wit_worker).collect();
        let call = self.plugin.select_worker(&self.runtime, &wit_task, &views);
        let answer = match tokio::runtime::Handle::try_current() {
            Ok(handle) => tokio::task::block_in_place(|| handle.block_on(call)),
            Err(_) => return LeastLoaded.select(task, workers),
        };
        match answer {
            Ok(choice) => choice,
            Err(e) => {
                tracing::warn!(strategy = %self.name, error = %e, "strategy plugin failed; using the built-in least_loaded");
                LeastLoaded.select(task, workers)
            }
        }
    }
}

fn to_wit_worker(w: &WorkerView) -> sentinel_runtime::WorkerView {
    sentinel_runtime::WorkerView {
        id: w.worker_id.clone(),
        status: match w.status {
            WorkerStatus::Active => sentinel_runtime::WorkerStatus::Active,
            WorkerStatus::Busy => sentinel_runtime::WorkerStatus::Busy,
            WorkerStatus::Draining => sentinel_runtime::WorkerStatus::Draining,
            WorkerStatus::Offline => sentinel_runtime::WorkerStatus::Offline,
        },
        health: match w.health {
            HealthState::Healthy => sentinel_runtime::Health::Healthy,
            HealthState::Degraded => sentinel_runtime::Health::Degraded,
            HealthState::Unhealthy => sentinel_runtime::Health::Unhealthy,
        },
        max_slots: w.max_tasks,
        active_slots: w.active_tasks,
        available_slots: w.available_slots,
        cpu_cores: w.cpu_cores,
        memory_mb: w.memory_mb,
        task_types: w.supported_task_types.clone(),
        labels: Vec::new(),
        success_rate: w.success_rate,
        avg_duration_ms: w.avg_duration_ms,
        heartbeat_age_ms: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_round_trip_as_json_and_other_bytes_as_base64() {
        let json = br#"{"a":1}"#;
        assert_eq!(encode(json), serde_json::json!({"a": 1}));
        assert_eq!(decode(&encode(json)), json.to_vec());
        let raw = [0u8, 255, 7];
        assert!(is_wrapped(&encode(&raw)));
        assert_eq!(decode(&encode(&raw)), raw.to_vec());
        // A value that merely looks like the wrapper is wrapped again, so it round-trips too.
        let tricky = br#"{"$bytes_b64":"AAE="}"#;
        assert_eq!(decode(&encode(tricky)), tricky.to_vec());
    }
}
