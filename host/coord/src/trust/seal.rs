//! The seal of a worker record: who the worker is (id, incarnation, host, capabilities, metadata,
//! heartbeat promises) and when it last proved to be alive (`at`, on the sealing process's store
//! clock), with the health data it sent then. Status and capacity are left out: maintenance and
//! operators change them too, and a worker's next heartbeat corrects a forged one.

use serde::{Deserialize, Serialize};

use super::{Canonical, FleetKeys};
use crate::model::{HeartbeatInfo, WorkerRecord, WorkerRegistration};

const DOMAIN: &str = "sentinel/worker-heartbeat/v1";

/// Stored in the heartbeat's health data ([`HeartbeatInfo::seal`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerSeal {
    /// When the heartbeat was sealed, ms on the store's clock: the worker's authenticated
    /// liveness (a replayed heartbeat carries its old `at`).
    pub at: i64,
    /// Heartbeats sealed by this incarnation so far.
    pub seq: u64,
    /// HMAC-SHA256, hex.
    pub mac: String,
}

/// The identity part, as registered.
struct Identity<'a> {
    worker_id: &'a str,
    incarnation: u64,
    hostname: &'a str,
    capabilities: &'a crate::model::WorkerCapabilities,
    metadata: &'a serde_json::Value,
    heartbeat_interval_ms: u64,
    stale_threshold_ms: u64,
}

fn message(store_id: &str, id: &Identity, health: &HeartbeatInfo, at: i64, seq: u64) -> Canonical {
    let mut m = Canonical::new(DOMAIN, store_id)
        .text(id.worker_id)
        .num(id.incarnation)
        .text(id.hostname)
        .num(u64::from(id.capabilities.cpu_cores))
        .num(id.capabilities.memory_mb)
        .num(id.capabilities.supported_task_types.len() as u64);
    for t in &id.capabilities.supported_task_types {
        m = m.text(t);
    }
    let opt = |v: Option<u64>| v.map_or(Vec::new(), |n| n.to_be_bytes().to_vec());
    m.text(&id.metadata.to_string())
        .num(id.heartbeat_interval_ms)
        .num(id.stale_threshold_ms)
        .field(&opt(health.load.map(f64::to_bits)))
        .field(&opt(health.memory_bytes))
        .field(&opt(health.active_tasks.map(u64::from)))
        .text(&health.extra.to_string())
        .int(at)
        .num(seq)
}

impl WorkerSeal {
    /// Seals a heartbeat of the registered worker `reg`.
    pub fn new(
        keys: &FleetKeys,
        store_id: &str,
        reg: &WorkerRegistration,
        health: &HeartbeatInfo,
        at: i64,
        seq: u64,
    ) -> WorkerSeal {
        let id = Identity {
            worker_id: &reg.worker_id,
            incarnation: reg.incarnation,
            hostname: &reg.hostname,
            capabilities: &reg.capabilities,
            metadata: &reg.metadata,
            heartbeat_interval_ms: reg.heartbeat_interval_ms,
            stale_threshold_ms: reg.stale_threshold_ms,
        };
        let mac = keys.seal(&message(store_id, &id, health, at, seq));
        WorkerSeal { at, seq, mac }
    }

    /// The authenticated heartbeat time of a stored record, or `None` if it carries no seal or
    /// one the fleet did not make for exactly this record.
    pub fn verify(keys: &FleetKeys, store_id: &str, rec: &WorkerRecord) -> Option<i64> {
        let seal = rec.heartbeat.seal.as_ref()?;
        let id = Identity {
            worker_id: &rec.worker_id,
            incarnation: rec.incarnation,
            hostname: &rec.hostname,
            capabilities: &rec.capabilities,
            metadata: &rec.metadata,
            heartbeat_interval_ms: rec.heartbeat_interval_ms,
            stale_threshold_ms: rec.stale_threshold_ms,
        };
        let m = message(store_id, &id, &rec.heartbeat, seal.at, seal.seq);
        keys.verify(&m, &seal.mac).then_some(seal.at)
    }
}
