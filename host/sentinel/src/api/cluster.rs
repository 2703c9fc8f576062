//! Health, metrics, workers, locks, plugins and load: the operator's view of the fleet.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use sentinel_coord::model::limits::{MAX_METADATA_ENTRIES, MAX_NAME_BYTES, PRIORITY};
use sentinel_coord::model::{HealthState, LockFilter, WorkerFilter, WorkerRecord, WorkerStatus};
use serde::Deserialize;

use super::auth::Caller;
use super::extract::{Body, NoBody, Path, Query};
use super::page::Page;
use super::tasks::AffinityRules;
use super::{ApiError, Int, in_range, iso, name_len};
use crate::node::NodeState;

fn health_name(h: HealthState) -> &'static str {
    match h {
        HealthState::Healthy => "healthy",
        HealthState::Degraded => "degraded",
        HealthState::Unhealthy => "unhealthy",
    }
}

/// `GET /health` (seed 001): this worker.
pub async fn health(State(s): State<Arc<NodeState>>) -> impl IntoResponse {
    let id = &s.settings.worker_id;
    let active = s.active.load(Ordering::Relaxed);
    let max = s.settings.max_tasks;
    let (status, code, last_heartbeat) = match (s.store.get_worker(id).await, s.store.now().await) {
        (Ok(Some(w)), Ok(now)) => {
            let h = w.health_at(now, s.registry.thresholds());
            let code = if h == HealthState::Unhealthy {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            (health_name(h), code, Some(iso(w.last_heartbeat)))
        }
        (Ok(None), _) => ("unhealthy", StatusCode::SERVICE_UNAVAILABLE, None),
        _ => ("unhealthy", StatusCode::SERVICE_UNAVAILABLE, None),
    };
    let body = serde_json::json!({
        "status": status,
        "worker_id": id,
        "uptime_seconds": s.started.elapsed().as_secs(),
        "active_tasks": active,
        "capacity": { "max": max, "available": max.saturating_sub(active) },
        "last_heartbeat": last_heartbeat,
        "store": s.store.backend_name(),
        "plugins": s.folder.list().iter().filter(|p| p.kind.is_some()).count(),
    });
    (code, Json(body))
}

/// `GET /cluster/health` (seed 001): the whole fleet sharing this store.
pub async fn cluster_health(
    State(s): State<Arc<NodeState>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let workers = s.store.list_workers().await?;
    let now = s.store.now().await?;
    let stats = s.store.queue_stats(None).await?;
    let live: Vec<&WorkerRecord> = workers
        .iter()
        .filter(|w| w.status != WorkerStatus::Offline)
        .collect();
    let healthy = live
        .iter()
        .filter(|w| w.health_at(now, s.registry.thresholds()) == HealthState::Healthy)
        .count();
    let total_capacity: u64 = live.iter().map(|w| w.capacity.max_tasks as u64).sum();
    let utilized: u64 = live.iter().map(|w| w.capacity.active_tasks as u64).sum();
    let status = if live.is_empty() || healthy == 0 {
        "unhealthy"
    } else if healthy < live.len() {
        "degraded"
    } else {
        "healthy"
    };
    Ok(Json(serde_json::json!({
        "status": status,
        "total_workers": live.len(),
        "healthy_workers": healthy,
        "total_capacity": total_capacity,
        "utilized_capacity": utilized,
        "tasks_queued": stats.pending + stats.failed,
        "tasks_in_progress": stats.running,
        "tasks_completed": stats.completed,
        "tasks_dead": stats.dead,
    })))
}

/// `GET /metrics`: Prometheus text format. Fleet gauges are refreshed from the store here.
pub async fn metrics(State(s): State<Arc<NodeState>>) -> impl IntoResponse {
    if let Err(e) = refresh_gauges(&s).await {
        tracing::warn!(error = %e, "refreshing fleet gauges for /metrics");
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn refresh_gauges(s: &NodeState) -> Result<(), sentinel_coord::StoreError> {
    let m = &s.metrics;
    let stats = s.store.queue_stats(None).await?;
    for (state, n) in [
        ("pending", stats.pending),
        ("running", stats.running),
        ("completed", stats.completed),
        ("failed", stats.failed),
        ("dead", stats.dead),
        ("cancelled", stats.cancelled),
    ] {
        m.tasks_by_state.with_label_values(&[state]).set(n as i64);
    }
    let now = s.store.now().await?;
    let workers = s.store.list_workers().await?;
    let live: Vec<_> = workers
        .iter()
        .filter(|w| w.status != WorkerStatus::Offline)
        .collect();
    for h in [
        HealthState::Healthy,
        HealthState::Degraded,
        HealthState::Unhealthy,
    ] {
        let n = live
            .iter()
            .filter(|w| w.health_at(now, s.registry.thresholds()) == h)
            .count();
        m.workers_by_health
            .with_label_values(&[health_name(h)])
            .set(n as i64);
    }
    m.workers_total.set(live.len() as i64);
    m.capacity_total
        .set(live.iter().map(|w| w.capacity.max_tasks as i64).sum());
    m.capacity_used
        .set(live.iter().map(|w| w.capacity.active_tasks as i64).sum());
    m.locks_active
        .set(s.store.list_locks(&LockFilter::default()).await?.len() as i64);
    m.plugins_loaded
        .set(s.folder.list().iter().filter(|p| p.kind.is_some()).count() as i64);
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersQuery {
    pub status: Option<String>,
    pub health: Option<String>,
    pub task_type: Option<String>,
    pub has_capacity: Option<bool>,
    pub min_available_slots: Option<u32>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub order: Option<String>,
}

fn worker_json(s: &NodeState, w: &WorkerRecord, now: i64) -> serde_json::Value {
    serde_json::json!({
        "worker_id": w.worker_id,
        "hostname": w.hostname,
        "status": w.status.as_str(),
        "health": health_name(w.health_at(now, s.registry.thresholds())),
        "registered_at": iso(w.registered_at),
        "last_heartbeat": iso(w.last_heartbeat),
        "heartbeat_age_ms": now - w.last_heartbeat,
        "capacity": { "max_tasks": w.capacity.max_tasks, "active_tasks": w.capacity.active_tasks, "available_slots": w.capacity.available_slots },
        "capabilities": { "cpu_cores": w.capabilities.cpu_cores, "memory_mb": w.capabilities.memory_mb, "supported_task_types": w.capabilities.supported_task_types },
        "stats": { "completed": w.stats.completed, "failed": w.stats.failed, "success_rate": w.stats.success_rate(), "avg_duration_ms": w.stats.average_duration_ms() },
        "metadata": w.metadata,
    })
}

/// `GET /v1/workers` with seed filters, by worker id (ascending by default), paged.
pub async fn workers(
    State(s): State<Arc<NodeState>>,
    Query(q): Query<WorkersQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let page = Page::parse(q.limit, q.cursor.as_deref(), q.order.as_deref(), false)?;
    let statuses = match &q.status {
        Some(v) => Some(vec![WorkerStatus::parse(v).ok_or_else(|| {
            ApiError::bad_request(
                "INVALID_QUERY",
                format!("status {v:?}: use active, busy, draining or offline"),
            )
        })?]),
        None => None,
    };
    let health = match q.health.as_deref() {
        None => None,
        Some("healthy") => Some(vec![HealthState::Healthy]),
        Some("degraded") => Some(vec![HealthState::Degraded]),
        Some("unhealthy") => Some(vec![HealthState::Unhealthy]),
        Some(v) => {
            return Err(ApiError::bad_request(
                "INVALID_QUERY",
                format!("health {v:?}: use healthy, degraded or unhealthy"),
            ));
        }
    };
    let filter = WorkerFilter {
        statuses,
        has_capacity: q.has_capacity,
        task_type: q.task_type,
        min_available_slots: q.min_available_slots,
        health,
    };
    let list = s.registry.list(&filter).await?;
    let (list, next) = page.apply(list, |w| w.worker_id.clone());
    let now = s.store.now().await?;
    Ok(Json(serde_json::json!({
        "workers": list.iter().map(|w| worker_json(&s, w, now)).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

/// `GET /v1/workers/{id}` with its performance.
pub async fn worker(
    State(s): State<Arc<NodeState>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let w = s
        .registry
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("worker {id} not found")))?;
    let now = s.store.now().await?;
    Ok(Json(worker_json(&s, &w, now)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocksQuery {
    pub worker: Option<String>,
    #[serde(default)]
    pub include_expired: bool,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub order: Option<String>,
}

/// `GET /v1/locks` (the caller's tenant), by key (ascending by default), paged.
pub async fn locks(
    State(s): State<Arc<NodeState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Query(q): Query<LocksQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let page = Page::parse(q.limit, q.cursor.as_deref(), q.order.as_deref(), false)?;
    let locks = s
        .store
        .list_locks(&LockFilter {
            tenant: caller.listing_tenant(),
            owner: q.worker,
            include_expired: q.include_expired,
        })
        .await?;
    // `tenant/key`: unique across tenants (tenant names hold no '/'), for an admin's listing.
    let (locks, next) = page.apply(locks, |l| format!("{}/{}", l.tenant, l.key));
    let locks: Vec<_> = locks
        .into_iter()
        .map(|l| {
            serde_json::json!({
                "tenant": l.tenant, "key": l.key, "owner": l.owner, "token": l.token,
                "acquired_at": iso(l.acquired_at), "expires_at": iso(l.expires_at), "metadata": l.metadata,
            })
        })
        .collect();
    Ok(Json(
        serde_json::json!({ "locks": locks, "next_cursor": next }),
    ))
}

/// `GET /v1/plugins`: an admin sees every plugin of this host (loaded and rejected) and the
/// folder; a tenant sees only the executors it may run, each with the task types allowed to it.
pub async fn plugins(
    State(s): State<Arc<NodeState>>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Json<serde_json::Value> {
    if caller.principal.is_admin() {
        return Json(
            serde_json::json!({ "plugins": s.folder.list(), "dir": s.folder.dir().display().to_string() }),
        );
    }
    let tenancy = &s.settings.tenancy;
    let plugins: Vec<_> = s
        .folder
        .list()
        .into_iter()
        .filter(|p| p.kind == Some(sentinel_runtime::PluginKind::Executor))
        .filter(|p| {
            let signer = p
                .signed_by
                .as_deref()
                .and_then(|k| sentinel_runtime::PublicKey::parse(k).ok());
            tenancy.trusts(&caller.tenant, signer.as_ref())
        })
        .filter_map(|mut p| {
            p.task_types
                .retain(|t| tenancy.may_submit(&caller.tenant, t));
            // Why another version was rejected is the operator's business.
            p.error = None;
            (!p.task_types.is_empty()).then_some(p)
        })
        .collect();
    Json(serde_json::json!({ "plugins": plugins }))
}

/// `GET /v1/whoami`: the caller's principal and the tenant it acts on.
pub async fn whoami(Extension(caller): Extension<Arc<Caller>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "principal": caller.principal.name,
        "role": caller.principal.role.as_str(),
        "tenant": caller.tenant,
        "all_tenants": caller.all_tenants,
    }))
}

/// `GET /v1/cluster/load` (seed `getLoadDistribution`).
pub async fn load(State(s): State<Arc<NodeState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let d = s.balancer.load_distribution().await?;
    Ok(Json(
        serde_json::json!({ "strategy": s.balancer.strategy_name(), "distribution": d }),
    ))
}

/// `POST /v1/cluster/rebalance` (seed `rebalance`).
pub async fn rebalance(
    State(s): State<Arc<NodeState>>,
    _: NoBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    let r = s.balancer.rebalance().await?;
    Ok(Json(serde_json::to_value(r).unwrap_or_default()))
}

/// What `select-worker` places.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementRequest {
    #[serde(rename = "type")]
    pub task_type: String,
    priority: Option<Int>,
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub affinity: Option<AffinityRules>,
}

/// `POST /v1/cluster/select-worker` (seed `selectWorker`, push): the worker the current strategy
/// would give this task, among live, healthy workers with a free slot that serve its type.
pub async fn select_worker(
    State(s): State<Arc<NodeState>>,
    Extension(caller): Extension<Arc<Caller>>,
    Body(body): Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = caller.tenant.clone();
    let req: PlacementRequest = super::parse_json(&body)?;
    name_len("type", &req.task_type, MAX_NAME_BYTES)?;
    let priority = req.priority.map_or(0, |p| p.0);
    in_range(&PRIORITY, priority, "")?;
    if req.metadata.len() > MAX_METADATA_ENTRIES {
        return Err(ApiError::bad_request(
            "INVALID_FIELD",
            format!(
                "metadata: {} entries; at most {MAX_METADATA_ENTRIES}",
                req.metadata.len()
            ),
        ));
    }
    let task = sentinel_coord::balancer::TaskInfo {
        id: String::new(),
        tenant,
        task_type: req.task_type,
        priority: priority as i32,
        affinity: req.affinity.unwrap_or_default().into_checked("")?,
        estimated_duration_ms: req
            .metadata
            .get("estimated_duration_ms")
            .and_then(|v| v.parse().ok()),
        metadata: req.metadata,
    };
    let chosen = s.balancer.select_worker(&task, None).await?;
    s.metrics.balancer_decisions.inc();
    let now = s.store.now().await?;
    Ok(Json(serde_json::json!({
        "strategy": s.balancer.strategy_name(),
        "worker": chosen.map(|w| worker_json(&s, &w, now)),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyChange {
    pub strategy: String,
}

/// `PUT /v1/cluster/strategy` (seed `setStrategy`): changes this host's strategy at run time.
pub async fn set_strategy(
    State(s): State<Arc<NodeState>>,
    Body(body): Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let req: StrategyChange = super::parse_json(&body)?;
    name_len("strategy", &req.strategy, 2 * MAX_NAME_BYTES)?;
    crate::node::set_strategy(&s.balancer, &req.strategy, &s.folder)
        .map_err(|e| ApiError::bad_request("INVALID_STRATEGY", format!("{e:#}")))?;
    Ok(Json(
        serde_json::json!({ "strategy": s.balancer.strategy_name() }),
    ))
}
