//! Prometheus metrics of one host (seed 001 "Metrics to Track"), exposed at `GET /metrics`.
//!
//! Counters are updated where things happen (the worker loop, the API); gauges that describe
//! the cluster (workers, queue depth, locks) are refreshed from the store when scraped, so a
//! scrape of any host shows the whole fleet.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// All metrics of the host.
pub struct Metrics {
    registry: Registry,
    pub tasks_submitted: IntCounter,
    pub tasks_settled: IntCounterVec,
    pub task_duration: Histogram,
    pub sandbox_errors: IntCounterVec,
    pub tasks_running_here: IntGauge,
    pub tasks_by_state: IntGaugeVec,
    pub workers_by_health: IntGaugeVec,
    pub workers_total: IntGauge,
    pub capacity_total: IntGauge,
    pub capacity_used: IntGauge,
    pub locks_active: IntGauge,
    pub heartbeats: IntCounterVec,
    pub memory_ops: IntCounterVec,
    pub balancer_decisions: IntCounter,
    pub stale_workers_detected: IntCounter,
    pub completions_rejected: IntCounter,
    /// Claims given back unstarted from the local buffer (shutdown, or a long wait for a slot).
    pub claims_released: IntCounter,
    pub plugins_loaded: IntGauge,
    /// Audit events by kind (`refused`, `admin`) and reason or outcome.
    pub audit_events: IntCounterVec,
    /// Store records ignored because the fleet did not seal them, by record kind.
    pub unsealed_records: IntCounterVec,
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new(worker_id: &str) -> Metrics {
        let registry = Registry::new_custom(
            Some("sentinel".into()),
            Some([("worker_id".to_string(), worker_id.to_string())].into()),
        )
        .expect("valid registry");
        let r = &registry;
        let task_duration = Histogram::with_opts(
            HistogramOpts::new(
                "task_duration_seconds",
                "Time from claim to settlement of tasks run by this host",
            )
            .buckets(vec![
                0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0,
            ]),
        )
        .expect("valid metric");
        r.register(Box::new(task_duration.clone()))
            .expect("unique metric");
        Metrics {
            tasks_submitted: counter(
                r,
                "tasks_submitted_total",
                "Tasks accepted by this host's API",
            ),
            tasks_settled: counter_vec(
                r,
                "tasks_settled_total",
                "Tasks run by this host, by outcome",
                &["outcome"],
            ),
            task_duration,
            sandbox_errors: counter_vec(
                r,
                "sandbox_errors_total",
                "Sandbox failures by code",
                &["code"],
            ),
            tasks_running_here: gauge(r, "tasks_running_local", "Tasks running on this host now"),
            tasks_by_state: gauge_vec(
                r,
                "tasks",
                "Tasks in the store by state (queued = pending)",
                &["state"],
            ),
            workers_by_health: gauge_vec(r, "workers", "Registered workers by health", &["health"]),
            workers_total: gauge(r, "workers_active", "Registered workers not offline"),
            capacity_total: gauge(r, "capacity_total", "Task slots of all live workers"),
            capacity_used: gauge(r, "capacity_used", "Busy task slots of all live workers"),
            locks_active: gauge(r, "locks_active", "Unexpired locks"),
            unsealed_records: counter_vec(
                r,
                "unsealed_records_total",
                "Store records ignored because their fleet seal is missing or wrong, by record",
                &["record"],
            ),
            heartbeats: counter_vec(
                r,
                "heartbeats_total",
                "Heartbeats sent by this host, by result",
                &["result"],
            ),
            memory_ops: counter_vec(
                r,
                "memory_sync_operations_total",
                "Shared-memory operations through this host's API",
                &["op"],
            ),
            balancer_decisions: counter(
                r,
                "load_balancer_decisions_total",
                "Worker selections made by this host",
            ),
            stale_workers_detected: counter(
                r,
                "stale_workers_detected_total",
                "Workers declared dead by this host's maintenance",
            ),
            completions_rejected: counter(
                r,
                "completions_rejected_total",
                "Results refused because the lease/fence was lost",
            ),
            claims_released: counter(
                r,
                "claims_released_total",
                "Buffered claims given back to the queue unstarted",
            ),
            plugins_loaded: gauge(r, "plugins_loaded", "Plugins loaded on this host"),
            audit_events: counter_vec(
                r,
                "audit_events_total",
                "Admin actions and refused accesses, by kind and reason",
                &["kind", "reason"],
            ),
            registry,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
