//! Sandbox benchmarks: what one task, one strategy call and one plugin load cost.
//!
//! The target (BRIEF, "Targets") is per-task sandbox overhead within **1.5x of bare
//! wasmtime** doing the same work with an `InstancePre` and the pooling allocator, measured
//! in the same run. So every group runs in one process, and the baseline shares the
//! runtime's engine configuration (`sentinel_runtime::engine::wasmtime_config`): the ratio
//! is Sentinel's own per-task work (WASI context, limits, epoch callback, timeout, log
//! capture, output checks) and nothing else.
//!
//! * `per_task`: the `echo` executor with a tiny payload, fresh store + instance per task,
//!   through `ExecutorPlugin::run` and through bare wasmtime; then two at a time on a
//!   two-thread tokio runtime (throughput). A summary computed from interleaved `Instant`
//!   measurements (N = 2000 each) is printed to stderr at the end.
//! * `strategy`: `weighted-score` `select_worker` over 1,000 workers, and over none (the
//!   fixed cost of a strategy sandbox).
//! * `startup`: `Runtime::load` compiling (no cache) versus mapping the precompiled file
//!   from the on-disk cache, for `word-count.wasm` and, when `componentize-py` is
//!   installed, an ~18 MB Python component generated in a temporary directory.
//!
//! Run: `cargo bench -p sentinel-runtime --bench sandbox`.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use sentinel_runtime::bindings::executor::ExecutorPre;
use sentinel_runtime::engine::{EngineConfig, wasmtime_config};
use sentinel_runtime::{
    ExecutorPlugin, Health, HostPolicy, LoadedPlugin, Manifest, Runtime, RuntimeConfig,
    StrategyPlugin, Task, TaskServices, WorkerStatus, WorkerView,
};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Lines printed to stderr after criterion's own output.
static SUMMARY: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn note(line: String) {
    eprintln!("{line}");
    SUMMARY.lock().unwrap().push(line);
}

// ---------------------------------------------------------------------------------------
// Shared set-up

fn examples_dir() -> &'static Path {
    &sentinel_guest_build::build_once().plugins_dir
}

fn runtime(cache_dir: Option<std::path::PathBuf>) -> Arc<Runtime> {
    Runtime::new(RuntimeConfig {
        cache_dir,
        policy: HostPolicy::default(),
        ..RuntimeConfig::default()
    })
    .expect("runtime")
}

fn manifest(dir: &Path, name: &str) -> Manifest {
    let text = std::fs::read_to_string(dir.join(format!("{name}.toml"))).expect("manifest");
    Manifest::parse(&text, name).expect("valid manifest")
}

fn wasm(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(format!("{name}.wasm"))).expect("built guest")
}

fn task(task_type: &str, payload: &[u8]) -> Task {
    Task {
        id: "bench-task-0001".into(),
        task_type: task_type.into(),
        tenant: "default".into(),
        priority: 0,
        attempt: 1,
        payload: payload.to_vec(),
        metadata: vec![],
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn two_threads() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// The baseline: bare wasmtime, same engine configuration, InstancePre, minimal WASI

struct BareState {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for BareState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

struct Bare {
    engine: Engine,
    pre: ExecutorPre<BareState>,
}

impl Bare {
    fn new(wasm: &[u8]) -> Bare {
        let engine = Engine::new(&wasmtime_config(&EngineConfig::default())).unwrap();
        let component = Component::new(&engine, wasm).unwrap();
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
        // echo never calls logging, progress, keyvalue or config.
        linker.define_unknown_imports_as_traps(&component).unwrap();
        let pre = ExecutorPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
        Bare { engine, pre }
    }

    async fn run(&self, task: &Task) -> Vec<u8> {
        let state = BareState {
            ctx: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
        };
        let mut store = Store::new(&self.engine, state);
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        let instance = self.pre.instantiate_async(&mut store).await.unwrap();
        instance
            .call_run(&mut store, task)
            .await
            .unwrap()
            .expect("echo succeeds")
    }
}

async fn sentinel_run(
    rt: &Arc<Runtime>,
    plugin: &ExecutorPlugin,
    task: &Task,
    services: &TaskServices,
) -> Vec<u8> {
    plugin
        .run(rt, task, services)
        .await
        .result
        .expect("echo succeeds")
}

// ---------------------------------------------------------------------------------------
// 1. per_task

fn per_task(c: &mut Criterion) {
    let dir = examples_dir();
    let rt = runtime(None);
    let plugin = match rt.load(manifest(dir, "echo"), &wasm(dir, "echo")).unwrap() {
        LoadedPlugin::Executor(p) => p,
        LoadedPlugin::Strategy(_) => unreachable!(),
    };
    let bare = Arc::new(Bare::new(&wasm(dir, "echo")));
    let services = TaskServices::in_memory();
    let t = task("echo", br#"{"hello":"world"}"#);

    let single = current_thread();
    let multi = two_threads();
    // Both paths produce the same output before anything is timed.
    let a = single.block_on(sentinel_run(&rt, &plugin, &t, &services));
    let b = single.block_on(bare.run(&t));
    assert_eq!(a, b);
    assert_eq!(a, t.payload);

    let mut g = c.benchmark_group("per_task");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(1));
    g.bench_function("sentinel_runtime", |b| {
        b.to_async(&single)
            .iter(|| sentinel_run(&rt, &plugin, &t, &services))
    });
    g.bench_function("bare_wasmtime", |b| {
        b.to_async(&single).iter(|| bare.run(&t))
    });

    // Two tasks in flight at all times: two spawned loops of BATCH/2 tasks each.
    const BATCH: u64 = 100;
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("sentinel_runtime_concurrent_2", |b| {
        b.to_async(&multi)
            .iter(|| two_lanes_sentinel(&rt, &plugin, &t, &services, BATCH / 2))
    });
    g.bench_function("bare_wasmtime_concurrent_2", |b| {
        b.to_async(&multi)
            .iter(|| two_lanes_bare(&bare, &t, BATCH / 2))
    });
    g.finish();

    // Interleaved, so drift (frequency, other users of the machine) hits both alike.
    const N: usize = 2000;
    let (mut s, mut w) = (Vec::with_capacity(N), Vec::with_capacity(N));
    single.block_on(async {
        for _ in 0..N {
            let t0 = Instant::now();
            std::hint::black_box(sentinel_run(&rt, &plugin, &t, &services).await);
            let t1 = Instant::now();
            std::hint::black_box(bare.run(&t).await);
            s.push(t1 - t0);
            w.push(t1.elapsed());
        }
    });
    let (sp, bp) = (p50(&mut s), p50(&mut w));
    let (sm, bm) = (mean(&s), mean(&w));
    note(format!(
        "per-task overhead: sentinel {sp:.1} µs, bare {bp:.1} µs, ratio {:.2} \
         (p50 of N={N} interleaved; means {sm:.1} / {bm:.1} µs, ratio {:.2})",
        sp / bp,
        sm / bm
    ));

    // Throughput over a longer stretch, one at a time and two at a time.
    const M: u64 = 4000;
    let seq = |f: &dyn Fn() -> Duration| M as f64 / f().as_secs_f64();
    let s1 = seq(&|| {
        single.block_on(async {
            let t0 = Instant::now();
            for _ in 0..M {
                std::hint::black_box(sentinel_run(&rt, &plugin, &t, &services).await);
            }
            t0.elapsed()
        })
    });
    let b1 = seq(&|| {
        single.block_on(async {
            let t0 = Instant::now();
            for _ in 0..M {
                std::hint::black_box(bare.run(&t).await);
            }
            t0.elapsed()
        })
    });
    let s2 = seq(&|| {
        multi.block_on(async {
            let t0 = Instant::now();
            two_lanes_sentinel(&rt, &plugin, &t, &services, M / 2).await;
            t0.elapsed()
        })
    });
    let b2 = seq(&|| {
        multi.block_on(async {
            let t0 = Instant::now();
            two_lanes_bare(&bare, &t, M / 2).await;
            t0.elapsed()
        })
    });
    note(format!(
        "throughput ({M} tasks): sentinel {s1:.0}/s one at a time, {s2:.0}/s two at a time; \
         bare {b1:.0}/s one at a time, {b2:.0}/s two at a time"
    ));
}

async fn two_lanes_sentinel(
    rt: &Arc<Runtime>,
    plugin: &Arc<ExecutorPlugin>,
    t: &Task,
    services: &TaskServices,
    per_lane: u64,
) {
    let lanes: Vec<_> = (0..2)
        .map(|_| {
            let (rt, plugin, t, services) =
                (rt.clone(), plugin.clone(), t.clone(), services.clone());
            tokio::spawn(async move {
                for _ in 0..per_lane {
                    std::hint::black_box(sentinel_run(&rt, &plugin, &t, &services).await);
                }
            })
        })
        .collect();
    for lane in lanes {
        lane.await.unwrap();
    }
}

async fn two_lanes_bare(bare: &Arc<Bare>, t: &Task, per_lane: u64) {
    let lanes: Vec<_> = (0..2)
        .map(|_| {
            let (bare, t) = (bare.clone(), t.clone());
            tokio::spawn(async move {
                for _ in 0..per_lane {
                    std::hint::black_box(bare.run(&t).await);
                }
            })
        })
        .collect();
    for lane in lanes {
        lane.await.unwrap();
    }
}

fn p50(v: &mut [Duration]) -> f64 {
    v.sort_unstable();
    v[v.len() / 2].as_secs_f64() * 1e6
}

fn mean(v: &[Duration]) -> f64 {
    v.iter().sum::<Duration>().as_secs_f64() * 1e6 / v.len() as f64
}

// ---------------------------------------------------------------------------------------
// 2. strategy

fn worker(i: usize) -> WorkerView {
    let max = 8 + (i % 8) as u32;
    let active = (i % 11) as u32 % max;
    WorkerView {
        id: format!("worker-{i:04}"),
        status: if i % 17 == 0 {
            WorkerStatus::Busy
        } else {
            WorkerStatus::Active
        },
        health: if i % 23 == 0 {
            Health::Degraded
        } else {
            Health::Healthy
        },
        max_slots: max,
        active_slots: active,
        available_slots: max - active,
        cpu_cores: 2,
        memory_mb: 4096,
        task_types: vec!["echo".into(), "sha256".into(), "word-count".into()],
        labels: vec![("zone".into(), format!("z{}", i % 3))],
        success_rate: 0.9 + (i % 10) as f64 / 100.0,
        avg_duration_ms: 10.0 + (i % 37) as f64,
        heartbeat_age_ms: (i % 1000) as u64,
    }
}

fn strategy(c: &mut Criterion) {
    let dir = examples_dir();
    let rt = runtime(None);
    let s: Arc<StrategyPlugin> = match rt
        .load(
            manifest(dir, "weighted-score"),
            &wasm(dir, "weighted-score"),
        )
        .unwrap()
    {
        LoadedPlugin::Strategy(s) => s,
        LoadedPlugin::Executor(_) => unreachable!(),
    };
    let single = current_thread();
    let t = task("echo", b"{}");
    let workers: Vec<WorkerView> = (0..1000).map(worker).collect();
    let none: Vec<WorkerView> = vec![];
    let pick = single.block_on(s.select_worker(&rt, &t, &workers)).unwrap();
    assert!(pick.is_some());

    let mut g = c.benchmark_group("strategy");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function("weighted_score_select_1000_workers", |b| {
        b.to_async(&single)
            .iter(|| async { s.select_worker(&rt, &t, &workers).await.unwrap() })
    });
    // No workers: a fresh strategy sandbox, one trivial call, teardown.
    g.bench_function("weighted_score_select_0_workers", |b| {
        b.to_async(&single)
            .iter(|| async { s.select_worker(&rt, &t, &none).await.unwrap() })
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------
// 3. startup

/// An ~18 MB Python executor (echo) built with componentize-py, or `None` if it is absent.
fn python_component(tmp: &Path) -> Option<Vec<u8>> {
    let present = Command::new("componentize-py")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        note(
            "startup: componentize-py not installed, skipping the ~18 MB Python component \
             (pip install componentize-py==0.25.1)"
                .into(),
        );
        return None;
    }
    std::fs::write(
        tmp.join("app.py"),
        "import wit_world\n\
         from wit_world.imports import types\n\n\
         class WitWorld(wit_world.WitWorld):\n    \
             def run(self, task: types.Task) -> bytes:\n        \
                 return task.payload\n",
    )
    .unwrap();
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
    let out = tmp.join("py-echo.wasm");
    let status = Command::new("componentize-py")
        .current_dir(tmp)
        .arg("-d")
        .arg(&wit)
        .args([
            "-w",
            "sentinel:plugin/executor",
            "componentize",
            "app",
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    if !status.status.success() {
        note(format!(
            "startup: componentize-py failed, skipping the Python component: {}",
            String::from_utf8_lossy(&status.stderr)
        ));
        return None;
    }
    Some(std::fs::read(out).unwrap())
}

fn startup(c: &mut Criterion) {
    let dir = examples_dir();
    let tmp = tempfile::tempdir().unwrap();
    let mut cases: Vec<(String, Manifest, Vec<u8>)> = vec![(
        "word-count".into(),
        manifest(dir, "word-count"),
        wasm(dir, "word-count"),
    )];
    if let Some(py) = python_component(tmp.path()) {
        let text = "name = \"py-echo\"\nversion = \"0.1.0\"\nkind = \"executor\"\n\
                    task-types = [\"echo\"]\n";
        let mb = py.len() as f64 / 1e6;
        cases.push((
            format!("python-{mb:.0}MB"),
            Manifest::parse(text, "py-echo").unwrap(),
            py,
        ));
    }
    // Cold: no cache, every load compiles. Warm: the cache entry exists, loads map it.
    let cold = runtime(None);
    let warm = runtime(Some(tmp.path().join("cache")));

    let mut g = c.benchmark_group("startup");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        // Compiling takes seconds: one load per sample, not criterion's growing batches.
        .sampling_mode(SamplingMode::Flat);
    for (name, manifest, bytes) in &cases {
        warm.load(manifest.clone(), bytes).unwrap(); // fills the cache
        g.bench_function(format!("{name}/cold_compile"), |b| {
            b.iter(|| cold.load(manifest.clone(), bytes).unwrap())
        });
        g.bench_function(format!("{name}/warm_cache"), |b| {
            b.iter(|| warm.load(manifest.clone(), bytes).unwrap())
        });
        // Where warm time goes: hashing the file versus mapping the precompiled artifact.
        let best = |f: &dyn Fn()| {
            (0..5)
                .map(|_| {
                    let t0 = Instant::now();
                    f();
                    t0.elapsed()
                })
                .min()
                .unwrap()
        };
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes));
        let hash = best(&|| {
            std::hint::black_box(<sha2::Sha256 as sha2::Digest>::digest(bytes));
        });
        let cwasm = std::fs::read_dir(tmp.path().join("cache"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&sha))
            .expect("cache entry");
        let map = best(&|| {
            // SAFETY: written by `Component::serialize` of an engine with this configuration.
            let c = unsafe { Component::deserialize_file(warm.engine(), &cwasm) };
            std::hint::black_box(c.unwrap());
        });
        note(format!(
            "startup {name} ({:.1} MB): of a warm load, SHA-256 of the file {:.2} ms, \
             deserialize_file of its cache entry {:.2} ms",
            bytes.len() as f64 / 1e6,
            hash.as_secs_f64() * 1e3,
            map.as_secs_f64() * 1e3
        ));
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    per_task(&mut c);
    strategy(&mut c);
    startup(&mut c);
    c.final_summary();
    eprintln!("\n== summary ==");
    for line in SUMMARY.lock().unwrap().iter() {
        eprintln!("{line}");
    }
}
