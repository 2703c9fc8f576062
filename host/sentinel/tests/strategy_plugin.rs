//! A WASM strategy behind the load balancer: used when it answers well, replaced by the
//! built-in fallback when it answers out of range.

mod support;

use std::sync::Arc;

use sentinel::bridges::WasmStrategy;
use sentinel_coord::balancer::{Strategy, TaskInfo, WorkerView};
use sentinel_coord::model::{Affinity, HealthState, WorkerStatus};
use sentinel_runtime::{HostPolicy, LoadedPlugin, Manifest, Runtime, RuntimeConfig};

fn view(id: &str, max: u32, active: u32) -> WorkerView {
    WorkerView {
        worker_id: id.into(),
        status: WorkerStatus::Active,
        health: HealthState::Healthy,
        max_tasks: max,
        active_tasks: active,
        available_slots: max - active,
        supported_task_types: vec![],
        cpu_cores: 2,
        memory_mb: 1024,
        completed: 10,
        failed: 0,
        success_rate: 1.0,
        avg_duration_ms: 10.0,
        load: None,
    }
}

fn task() -> TaskInfo {
    TaskInfo {
        id: "t".into(),
        tenant: "default".into(),
        task_type: "echo".into(),
        priority: 0,
        affinity: Affinity::default(),
        estimated_duration_ms: None,
        metadata: Default::default(),
    }
}

fn strategy(dir: &std::path::Path, name: &str) -> WasmStrategy {
    let runtime = Runtime::new(RuntimeConfig {
        policy: HostPolicy::default(),
        ..Default::default()
    })
    .unwrap();
    let manifest = Manifest::parse(
        &std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap(),
        name,
    )
    .unwrap();
    let LoadedPlugin::Strategy(plugin) = runtime
        .load(
            manifest,
            &std::fs::read(dir.join(format!("{name}.wasm"))).unwrap(),
        )
        .unwrap()
    else {
        panic!("{name} is a strategy");
    };
    WasmStrategy {
        name: format!("plugin:{name}"),
        plugin,
        runtime: Arc::clone(&runtime),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_weighted_score_plugin_places_tasks_through_the_strategy_seam() {
    let s = strategy(support::plugins_dir(), "weighted-score");
    let workers = vec![view("full", 4, 4), view("half", 4, 2), view("idle", 4, 0)];
    assert_eq!(s.select(&task(), &workers), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_range_strategy_falls_back_to_a_built_in() {
    let s = strategy(
        &sentinel_guest_build::build_once().hostile_dir,
        "bad-strategy",
    );
    let workers = vec![view("busy", 4, 3), view("idle", 4, 0)];
    // bad-strategy answers 4,000,000,000; the least-loaded fallback picks the idle worker.
    assert_eq!(s.select(&task(), &workers), Some(1));
}
