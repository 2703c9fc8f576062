//! Tenancy on GitHub beyond the conformance suite: a queue written before tasks were keyed by
//! `(tenant, id)` opens and keeps its tasks; quotas hold when several hosts (each with its own
//! store, as separate processes) share one repository; and tenants without a quota pay no extra
//! request on the hot path.

mod emulator;

use std::sync::Arc;

use sentinel_coord::model::*;
use sentinel_coord::{Clock, ManualClock, MemoryStore, QueueStore, StoreError, TenantStore};
use sentinel_github::api::{Api, RetryConfig};
use sentinel_github::doc::{Doc, Write};
use sentinel_github::git::Git;
use sentinel_github::{GithubConfig, GithubStore};
use serde_json::json;

/// A document handle of its own on the emulated repository (to write or inspect raw files).
fn raw_doc(emu: &emulator::Emulator, name: &str) -> Doc {
    let octo = octocrab::Octocrab::builder()
        .base_uri(emu.base.as_str())
        .unwrap()
        .personal_token("test-token".to_string())
        .build()
        .unwrap();
    let api = Arc::new(Api::new(
        octo,
        "octo",
        "fleet",
        ManualClock::new(),
        RetryConfig::default(),
    ));
    Doc::new(Arc::new(Git::new(api)), name)
}

async fn hosts(config: GithubConfig, n: usize) -> Vec<Arc<GithubStore>> {
    let clock: Arc<dyn Clock> = ManualClock::new();
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(Arc::new(
            GithubStore::connect(config.clone(), clock.clone())
                .await
                .unwrap(),
        ));
    }
    v
}

fn claim_req(worker: &str, limit: u32) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.into(),
        task_types: None,
        tenants: None,
        limit,
        lease_ms: 60_000,
        incarnation: 0,
    }
}

/// A task record exactly as the store wrote it before tenancy: at `tasks/<enc id>.json`, without
/// fair-share stamps.
fn legacy_record(seq: u64, id: &str, tenant: &str, depends_on: &[&str]) -> serde_json::Value {
    json!({
        "type": "SENTINEL_TASK", "seq": seq, "id": id, "tenant": tenant, "task_type": "t",
        "priority": 0, "payload": {"text": id}, "metadata": {}, "max_retries": 3,
        "timeout_ms": 60000, "attempt": 0, "state": "pending", "worker_id": null,
        "worker_incarnation": 0, "lease_expires_at": null, "deadline_at": null, "fence": 0,
        "output": null, "error": null, "created_at": 0, "updated_at": 0, "started_at": null,
        "finished_at": null, "run_at": 0, "depends_on": depends_on,
        "affinity": {"required_worker": null, "same_worker_as": null, "excluded_workers": []},
        "issue": null
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_written_before_tenancy_opens_keeps_its_tasks_and_moves_them_on_write() {
    let emu = emulator::Emulator::start().await;
    let queue = raw_doc(&emu, "sentinel/queue");
    queue
        .transact("a queue of the old layout", |_| {
            let writes = vec![
                Write::Put(
                    "tasks/first.json".into(),
                    legacy_record(1, "first", "acme", &[]),
                ),
                Write::Put(
                    "tasks/second.json".into(),
                    legacy_record(2, "second", "acme", &["first"]),
                ),
                Write::Put("meta.json".into(), json!({"next_seq": 2})),
            ];
            Ok((writes, ()))
        })
        .await
        .unwrap();

    let mut config = emu.quiet_config();
    config.issues = false;
    let store = GithubStore::connect(config, ManualClock::new())
        .await
        .unwrap();
    let second = store.get_task("acme", "second").await.unwrap().unwrap();
    assert_eq!(
        (second.state, &second.depends_on[..]),
        (TaskState::Pending, &["first".to_string()][..])
    );
    assert!(store.get_task("other", "first").await.unwrap().is_none());
    // The same id may now be used by another tenant; the old tenant's id stays taken.
    store
        .enqueue(&[NewTask::new("t", "b").with_id("first").with_tenant("beta")])
        .await
        .unwrap();
    assert!(matches!(
        store
            .enqueue(&[NewTask::new("t", "a").with_id("first").with_tenant("acme")])
            .await,
        Err(StoreError::Invalid(_))
    ));

    // Old tasks are claimed and settled like new ones; a write moves a record to its new path
    // in the same commit, so no task is ever at both or neither.
    let mut req = claim_req("w", 1);
    req.tenants = Some(vec!["acme".into()]);
    let t = store.claim(&req).await.unwrap().remove(0);
    assert_eq!(t.key(), TaskKey::new("acme", "first"));
    let files = queue.read().await.unwrap().files;
    assert!(
        files.contains_key("tasks/acme/first.json"),
        "{:?}",
        files.keys()
    );
    assert!(!files.contains_key("tasks/first.json"));
    assert!(
        files.contains_key("tasks/second.json"),
        "untouched records stay put"
    );
    store
        .complete(&[Completion {
            tenant: "acme".into(),
            task_id: "first".into(),
            fence: t.fence,
            output: b"done".to_vec(),
        }])
        .await
        .unwrap();
    let t = store.claim(&req).await.unwrap().remove(0);
    assert_eq!(
        (t.id.as_str(), &t.dependency_outputs["first"][..]),
        ("second", &b"done"[..])
    );
    let stats = store.queue_stats(Some("acme")).await.unwrap();
    assert_eq!((stats.completed, stats.running), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_sharing_a_repository_never_exceed_a_tenants_quotas() {
    let emu = emulator::Emulator::start().await;
    let mut config = emu.quiet_config();
    config.issues = false;
    let stores = hosts(config, 3).await;
    stores[0]
        .put_tenant(&TenantSettings::new("acme").with_quota(TenantQuota {
            max_queued: Some(7),
            max_running: Some(3),
            memory_keys: Some(5),
            ..TenantQuota::default()
        }))
        .await
        .unwrap();

    // Submissions: every host tries to push 2-task batches past the queued quota.
    let mut handles = Vec::new();
    for (h, s) in stores.iter().enumerate() {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let mut accepted = 0u64;
            for i in 0..4 {
                let batch: Vec<NewTask> = (0..2)
                    .map(|j| {
                        NewTask::new("t", "x")
                            .with_id(format!("h{h}-{i}-{j}"))
                            .with_tenant("acme")
                    })
                    .collect();
                match s.enqueue(&batch).await {
                    Ok(ids) => accepted += ids.len() as u64,
                    Err(StoreError::Quota(q)) => assert_eq!(q.quota, Quota::QueuedTasks),
                    Err(e) => panic!("{e:?}"),
                }
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for h in handles {
        accepted += h.await.unwrap();
    }
    let usage = stores[1].tenant_usage("acme").await.unwrap();
    assert_eq!(usage.queued, accepted);
    assert_eq!(accepted, 6, "2-task batches fill a quota of 7 up to 6");

    // Claims: every host asks for more than the running quota allows.
    let mut handles = Vec::new();
    for (h, s) in stores.iter().enumerate() {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            s.claim(&claim_req(&format!("w{h}"), 3))
                .await
                .unwrap()
                .len()
        }));
    }
    let mut claimed = 0;
    for h in handles {
        claimed += h.await.unwrap();
    }
    assert_eq!(claimed, 3, "fleet-wide running quota");
    assert_eq!(stores[2].tenant_usage("acme").await.unwrap().running, 3);

    // Memory keys: the quota set through one host holds for writes through every host.
    let mut handles = Vec::new();
    for (h, s) in stores.iter().enumerate() {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let mut written = 0;
            for i in 0..3 {
                let w = MemoryWrite {
                    tenant: "acme".into(),
                    namespace: "ns".into(),
                    key: format!("h{h}-{i}"),
                    value: json!(i),
                    writer: format!("w{h}"),
                    timestamp: None,
                    ttl_ms: None,
                    expected_version: None,
                };
                match s.memory_set(&w).await {
                    Ok(WriteOutcome::Written(_)) => written += 1,
                    Ok(other) => panic!("{other:?}"),
                    Err(StoreError::Quota(q)) => assert_eq!(q.quota, Quota::MemoryKeys),
                    Err(e) => panic!("{e:?}"),
                }
            }
            written
        }));
    }
    let mut written = 0;
    for h in handles {
        written += h.await.unwrap();
    }
    assert_eq!(written, 5);
    assert_eq!(stores[0].tenant_usage("acme").await.unwrap().memory_keys, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_settings_converge_in_both_documents() {
    let emu = emulator::Emulator::start().await;
    let mut config = emu.quiet_config();
    config.issues = false;
    let stores = hosts(config, 2).await;
    let quota = |keys| TenantQuota {
        memory_keys: Some(keys),
        ..TenantQuota::default()
    };
    for round in 0..3u64 {
        let (a, b) = (stores[0].clone(), stores[1].clone());
        let sa = TenantSettings::new("acme").with_quota(quota(10 + round));
        let sb = TenantSettings::new("acme").with_quota(quota(20 + round));
        let (ra, rb) = tokio::join!(a.put_tenant(&sa), b.put_tenant(&sb));
        ra.unwrap();
        rb.unwrap();
        let settled = stores[0].get_tenant("acme").await.unwrap().unwrap();
        let snap = raw_doc(&emu, "sentinel/memory").read().await.unwrap();
        let copy = snap
            .get("tenants/acme.json")
            .expect("the memory quota's copy");
        assert_eq!(
            copy["memory_keys"].as_u64(),
            settled.quota.memory_keys,
            "round {round}: the memory document enforces what the queue document says"
        );
    }
}

/// Requests (counted by the emulator: 304s are free) of one submission and one claim, each by
/// another host than the previous write, as in a fleet.
async fn costs(tenant: &str, settings: Option<TenantSettings>) -> Vec<(u64, u64, u64, u64)> {
    let emu = emulator::Emulator::start().await;
    let mut config = emu.quiet_config();
    config.issues = false;
    let stores = hosts(config, 2).await;
    let (a, b) = (&stores[0], &stores[1]);
    if let Some(s) = settings {
        a.put_tenant(&s).await.unwrap();
    }
    let task = || NewTask::new("t", "x").with_tenant(tenant);
    a.enqueue(&[task()]).await.unwrap();
    b.enqueue(&[task()]).await.unwrap();
    let mut out = Vec::new();
    for _ in 0..3 {
        let c0 = emu.control();
        a.enqueue(&[task()]).await.unwrap();
        let c1 = emu.control();
        assert_eq!(b.claim(&claim_req("w", 1)).await.unwrap().len(), 1);
        let c2 = emu.control();
        out.push((
            c1.counted - c0.counted,
            c1.writes - c0.writes,
            c2.counted - c1.counted,
            c2.writes - c1.writes,
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_without_a_quota_pay_no_extra_request() {
    // Measured on the store before tenancy (commit 1c62d30), the same exchange: a submission
    // is 9 counted requests of which 3 writes (tree, commit, ref), a claim the same. The reads
    // are the ref, the commit, the tree and the 3 changed records of the previous writes.
    let before = vec![(9, 3, 9, 3); 3];
    assert_eq!(costs("acme", None).await, before, "no settings");
    let weighted = TenantSettings::new("acme").with_weight(5);
    assert_eq!(
        costs("acme", Some(weighted)).await,
        before,
        "a weight is free"
    );
    let counted = TenantSettings::new("acme").with_quota(TenantQuota {
        max_queued: Some(1_000),
        max_running: Some(1_000),
        ..TenantQuota::default()
    });
    assert_eq!(
        costs("acme", Some(counted)).await,
        before,
        "count quotas are judged on the snapshot the transaction reads anyway"
    );
    // A submit rate keeps its bucket in the tenant's file: one more changed file per
    // submission, so one more blob for the next reader.
    let rated = TenantSettings::new("acme").with_quota(TenantQuota {
        submit_rate: Some(RateLimit {
            per_second: 1_000,
            burst: 1_000,
        }),
        ..TenantQuota::default()
    });
    let got = costs("acme", Some(rated)).await;
    assert!(
        got.iter()
            .all(|&(s, sw, c, cw)| s <= 10 && sw == 3 && c <= 10 && cw == 3),
        "{got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_writes_of_tenants_without_a_quota_pay_no_extra_request() {
    let emu = emulator::Emulator::start().await;
    let mut config = emu.quiet_config();
    config.issues = false;
    let stores = hosts(config, 2).await;
    let w = |i: u32| MemoryWrite {
        tenant: "acme".into(),
        namespace: "ns".into(),
        key: format!("k{i}"),
        value: json!(i),
        writer: "w".into(),
        timestamp: None,
        ttl_ms: None,
        expected_version: None,
    };
    stores[0].memory_set(&w(0)).await.unwrap();
    let mut got = Vec::new();
    for i in 1..5 {
        let c0 = emu.control();
        stores[(i % 2) as usize].memory_set(&w(i)).await.unwrap();
        let c1 = emu.control();
        got.push((c1.counted - c0.counted, c1.writes - c0.writes));
    }
    // Measured on the store before tenancy (commit 1c62d30), the same exchange: the ref, the
    // commit, the tree and the changed files (the other host's entry, log record and meta, and
    // from the second write on this host's own previous entry and log record), then tree,
    // commit and ref update.
    assert_eq!(got, [(9, 3), (11, 3), (11, 3), (11, 3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_in_two_tenants_has_two_issues_and_a_refused_batch_opens_none() {
    let emu = emulator::Emulator::start().await;
    let store = GithubStore::connect(emu.quiet_config(), ManualClock::new())
        .await
        .unwrap();
    let job = |tenant: &str| NewTask::new("t", "x").with_id("job-1").with_tenant(tenant);
    store.enqueue(&[job("beta"), job("gamma")]).await.unwrap();
    let tenant_label = |i: usize| emu.with_repo(|r| r.issues[i].labels[4].clone());
    assert_eq!(
        (tenant_label(0), tenant_label(1)),
        ("tenant:beta".into(), "tenant:gamma".into())
    );

    let mut req = claim_req("w", 1);
    req.tenants = Some(vec!["beta".into()]);
    let t = store.claim(&req).await.unwrap().remove(0);
    store
        .complete(&[Completion {
            tenant: t.tenant,
            task_id: t.id,
            fence: t.fence,
            output: b"{}".to_vec(),
        }])
        .await
        .unwrap();
    let states = emu.with_repo(|r| r.issues.iter().map(|i| i.state.clone()).collect::<Vec<_>>());
    assert_eq!(
        states,
        ["closed", "open"],
        "each task settles its own issue"
    );

    store
        .put_tenant(&TenantSettings::new("acme").with_quota(TenantQuota {
            max_queued: Some(1),
            ..TenantQuota::default()
        }))
        .await
        .unwrap();
    store.enqueue(&[job("acme")]).await.unwrap();
    let refused = store
        .enqueue(&[NewTask::new("t", "y").with_tenant("acme")])
        .await;
    assert!(matches!(refused, Err(StoreError::Quota(_))), "{refused:?}");
    assert_eq!(
        emu.with_repo(|r| r.issues.len()),
        3,
        "the refused batch opened no issue"
    );
}
