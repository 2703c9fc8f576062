use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerStatus {
    Active,
    Busy,
    Draining,
    Offline,
}

impl WorkerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Active => "active",
            WorkerStatus::Busy => "busy",
            WorkerStatus::Draining => "draining",
            WorkerStatus::Offline => "offline",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => WorkerStatus::Active,
            "busy" => WorkerStatus::Busy,
            "draining" => WorkerStatus::Draining,
            "offline" => WorkerStatus::Offline,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerCapacity {
    pub max_tasks: u32,
    pub active_tasks: u32,
    pub available_slots: u32,
}

impl WorkerCapacity {
    pub fn with_max(max_tasks: u32) -> Self {
        Self {
            max_tasks,
            active_tasks: 0,
            available_slots: max_tasks,
        }
    }

    /// Applies a partial update. When `active_tasks` or `max_tasks` change and `available_slots`
    /// is not given, the slots are recomputed so the three numbers never contradict each other.
    pub fn apply(&mut self, update: &CapacityUpdate) {
        if let Some(m) = update.max_tasks {
            self.max_tasks = m;
        }
        if let Some(a) = update.active_tasks {
            self.active_tasks = a;
        }
        self.available_slots = match update.available_slots {
            Some(s) => s,
            None if update.max_tasks.is_some() || update.active_tasks.is_some() => {
                self.max_tasks.saturating_sub(self.active_tasks)
            }
            None => self.available_slots,
        };
    }
}

/// The seed's `Partial<WorkerCapacity>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityUpdate {
    pub max_tasks: Option<u32>,
    pub active_tasks: Option<u32>,
    pub available_slots: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerCapabilities {
    pub cpu_cores: u32,
    pub memory_mb: u64,
    pub supported_task_types: Vec<String>,
}

impl WorkerCapabilities {
    /// An empty list means "any task type".
    pub fn supports(&self, task_type: &str) -> bool {
        self.supported_task_types.is_empty()
            || self.supported_task_types.iter().any(|t| t == task_type)
    }
}

/// One start of a worker process. A worker id is a name that outlives processes; each start is a
/// new **incarnation** (see [`new_incarnation`]) that owns the leases it claims. The heartbeat
/// interval and stale threshold are the worker's own promise: the maintenance node judges the
/// worker by them (see [`stale_after_ms`]), not by its own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRegistration {
    pub worker_id: String,
    pub hostname: String,
    pub capacity: WorkerCapacity,
    pub capabilities: WorkerCapabilities,
    pub metadata: serde_json::Value,
    /// Registering a different incarnation under a stored id requeues, in the same transaction,
    /// every task still running under the previous one.
    #[serde(default)]
    pub incarnation: u64,
    /// How often this worker promises to heartbeat; 0 = unannounced (the detector's floor rules).
    #[serde(default)]
    pub heartbeat_interval_ms: u64,
    /// How old this worker's heartbeat may get before it is presumed dead; 0 = unannounced.
    #[serde(default)]
    pub stale_threshold_ms: u64,
}

/// The smallest stale threshold any worker is judged by, whatever it announced: heartbeats
/// travel through a store, and a threshold shorter than a round trip would kill live workers.
pub const MIN_STALE_THRESHOLD_MS: i64 = 1000;

/// A fresh random incarnation for a process start (never 0, which means "unannounced").
pub fn new_incarnation() -> u64 {
    use rand::Rng;
    rand::rng().random_range(1..=u64::MAX)
}

/// The heartbeat age at which a worker is presumed dead: its announced threshold, but never less
/// than two of its heartbeat intervals nor the detector's `floor_ms`. Saturating: a hostile
/// announcement cannot overflow it.
pub fn stale_after_ms(stale_threshold_ms: u64, heartbeat_interval_ms: u64, floor_ms: i64) -> i64 {
    let announced = stale_threshold_ms.min(i64::MAX as u64) as i64;
    let intervals = heartbeat_interval_ms.saturating_mul(2).min(i64::MAX as u64) as i64;
    announced.max(intervals).max(floor_ms)
}

/// Health data sent with a heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatInfo {
    /// e.g. the 1-minute load average.
    pub load: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub active_tasks: Option<u32>,
    pub extra: serde_json::Value,
    /// The fleet's authentication of this heartbeat and of the worker's identity (see
    /// [`crate::trust`]); absent in a fleet without a secret. Stored with the health data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<crate::trust::WorkerSeal>,
}

/// Outcome counters kept per worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStats {
    pub completed: u64,
    pub failed: u64,
    pub total_duration_ms: u64,
}

impl WorkerStats {
    /// completed / (completed + failed); 1.0 with no history so a new worker is not starved.
    pub fn success_rate(&self) -> f64 {
        let total = self.completed + self.failed;
        if total == 0 {
            1.0
        } else {
            self.completed as f64 / total as f64
        }
    }

    /// Mean duration over every recorded outcome; 0 with no history.
    pub fn average_duration_ms(&self) -> f64 {
        let total = self.completed + self.failed;
        if total == 0 {
            0.0
        } else {
            self.total_duration_ms as f64 / total as f64
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub worker_id: String,
    pub hostname: String,
    pub status: WorkerStatus,
    pub registered_at: i64,
    pub last_heartbeat: i64,
    pub capacity: WorkerCapacity,
    pub capabilities: WorkerCapabilities,
    pub metadata: serde_json::Value,
    pub heartbeat: HeartbeatInfo,
    pub stats: WorkerStats,
    /// The process start that registered last (see [`WorkerRegistration::incarnation`]).
    #[serde(default)]
    pub incarnation: u64,
    #[serde(default)]
    pub heartbeat_interval_ms: u64,
    #[serde(default)]
    pub stale_threshold_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    Healthy,
    Degraded,
    Unhealthy,
}

/// Heartbeat-age thresholds (seed 003 defaults: healthy under 10 min, degraded under 15 min).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthThresholds {
    pub healthy_ms: i64,
    pub degraded_ms: i64,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        Self {
            healthy_ms: 10 * 60 * 1000,
            degraded_ms: 15 * 60 * 1000,
        }
    }
}

impl HealthThresholds {
    pub fn classify(&self, heartbeat_age_ms: i64) -> HealthState {
        if heartbeat_age_ms < self.healthy_ms {
            HealthState::Healthy
        } else if heartbeat_age_ms < self.degraded_ms {
            HealthState::Degraded
        } else {
            HealthState::Unhealthy
        }
    }
}

impl WorkerRecord {
    /// The heartbeat age at which this worker is presumed dead (see [`stale_after_ms`]).
    pub fn stale_after_ms(&self, floor_ms: i64) -> i64 {
        stale_after_ms(
            self.stale_threshold_ms,
            self.heartbeat_interval_ms,
            floor_ms,
        )
    }

    /// The thresholds this worker is judged by: a worker that announced its stale threshold is
    /// unhealthy from that age on (when maintenance would declare it dead) and degraded from half
    /// of it (several heartbeats missed); one that announced nothing gets `fallback`.
    pub fn health_thresholds(&self, fallback: &HealthThresholds) -> HealthThresholds {
        if self.stale_threshold_ms == 0 && self.heartbeat_interval_ms == 0 {
            return *fallback;
        }
        let degraded_ms = self.stale_after_ms(MIN_STALE_THRESHOLD_MS);
        HealthThresholds {
            healthy_ms: degraded_ms / 2,
            degraded_ms,
        }
    }

    pub fn health_at(&self, now_ms: i64, fallback: &HealthThresholds) -> HealthState {
        if self.status == WorkerStatus::Offline {
            return HealthState::Unhealthy;
        }
        self.health_thresholds(fallback)
            .classify(now_ms.saturating_sub(self.last_heartbeat))
    }
}

/// Discovery filter (seed 000 `WorkerFilter` plus seed 003 `minAvailableCapacity` and health).
/// `None` fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerFilter {
    pub statuses: Option<Vec<WorkerStatus>>,
    pub has_capacity: Option<bool>,
    pub task_type: Option<String>,
    pub min_available_slots: Option<u32>,
    pub health: Option<Vec<HealthState>>,
}

impl WorkerFilter {
    pub fn matches(&self, w: &WorkerRecord, now_ms: i64, thresholds: &HealthThresholds) -> bool {
        if let Some(s) = &self.statuses
            && !s.contains(&w.status)
        {
            return false;
        }
        if let Some(want) = self.has_capacity
            && (w.capacity.available_slots > 0) != want
        {
            return false;
        }
        if let Some(t) = &self.task_type
            && !w.capabilities.supports(t)
        {
            return false;
        }
        if let Some(min) = self.min_available_slots
            && w.capacity.available_slots < min
        {
            return false;
        }
        if let Some(h) = &self.health
            && !h.contains(&w.health_at(now_ms, thresholds))
        {
            return false;
        }
        true
    }
}
