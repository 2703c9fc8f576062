//! Memory cases.

use std::time::Duration;

use serde_json::json;

use super::{StoreFactory, fresh};
use crate::model::*;
use crate::store::Topic;

pub(crate) fn write(tenant: &str, ns: &str, key: &str, value: serde_json::Value) -> MemoryWrite {
    MemoryWrite {
        tenant: tenant.into(),
        namespace: ns.into(),
        key: key.into(),
        value,
        writer: "w1".into(),
        timestamp: None,
        ttl_ms: None,
        expected_version: None,
    }
}

pub(crate) fn written(o: WriteOutcome) -> MemoryEntry {
    match o {
        WriteOutcome::Written(e) => e,
        other => panic!("expected the write to apply, got {other:?}"),
    }
}

pub async fn memory_roundtrip_with_versions(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    let e1 = written(
        s.memory_set(&write("t", "tasks", "k", json!({"progress": 45})))
            .await
            .unwrap(),
    );
    assert_eq!(e1.version, 1);
    clock.advance_ms(1);
    let e2 = written(
        s.memory_set(&write("t", "tasks", "k", json!({"progress": 90})))
            .await
            .unwrap(),
    );
    assert_eq!(e2.version, 2);
    let got = s.memory_get("t", "tasks", "k").await.unwrap().unwrap();
    assert_eq!(got, e2);
    assert!(
        s.memory_get("t", "swarm", "k").await.unwrap().is_none(),
        "namespaces are separate"
    );
    clock.advance_ms(1);
    assert!(s.memory_delete("t", "tasks", "k", "w1").await.unwrap());
    assert!(s.memory_get("t", "tasks", "k").await.unwrap().is_none());
    assert!(
        !s.memory_delete("t", "tasks", "k", "w1").await.unwrap(),
        "deleting twice reports absence"
    );
    clock.advance_ms(1);
    let e3 = written(
        s.memory_set(&write("t", "tasks", "k", json!(1)))
            .await
            .unwrap(),
    );
    assert!(
        e3.version > 3,
        "versions keep increasing across a delete, got {}",
        e3.version
    );
}

pub async fn memory_list_by_prefix_is_literal_and_scoped(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    for k in ["task-1", "task-2", "task%x", "taskX", "other"] {
        s.memory_set(&write("t", "tasks", k, json!(k)))
            .await
            .unwrap();
    }
    s.memory_set(&write("t", "swarm", "task-9", json!(0)))
        .await
        .unwrap();
    s.memory_set(&write("t2", "tasks", "task-8", json!(0)))
        .await
        .unwrap();
    s.memory_delete("t", "tasks", "task-2", "w1").await.unwrap();
    let keys = |v: Vec<MemoryEntry>| v.into_iter().map(|e| e.key).collect::<Vec<_>>();
    assert_eq!(
        keys(
            s.memory_list("t", "tasks", "task-", None, 100)
                .await
                .unwrap()
        ),
        ["task-1"]
    );
    assert_eq!(
        keys(
            s.memory_list("t", "tasks", "task%", None, 100)
                .await
                .unwrap()
        ),
        ["task%x"]
    );
    assert_eq!(
        keys(s.memory_list("t", "tasks", "", None, 100).await.unwrap()),
        ["other", "task%x", "task-1", "taskX"]
    );
}

pub async fn last_write_wins_by_timestamp_then_writer(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let at = |ts: i64, writer: &str, v: i64| MemoryWrite {
        timestamp: Some(ts),
        writer: writer.into(),
        ..write("t", "global", "k", json!(v))
    };
    written(s.memory_set(&at(1000, "b", 1)).await.unwrap());
    let older = s.memory_set(&at(999, "z", 2)).await.unwrap();
    assert!(
        matches!(
            older,
            WriteOutcome::Superseded {
                timestamp: 1000,
                ..
            }
        ),
        "{older:?}"
    );
    let tie_loser = s.memory_set(&at(1000, "a", 3)).await.unwrap();
    assert!(
        matches!(tie_loser, WriteOutcome::Superseded { .. }),
        "equal timestamps: lower writer loses"
    );
    written(s.memory_set(&at(1000, "c", 4)).await.unwrap());
    written(s.memory_set(&at(1001, "a", 5)).await.unwrap());
    let e = s.memory_get("t", "global", "k").await.unwrap().unwrap();
    assert_eq!(
        (e.value, e.writer, e.timestamp),
        (json!(5), "a".to_string(), 1001)
    );
}

pub async fn compare_and_set_on_version(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let cas = |v: serde_json::Value, expected: u64| MemoryWrite {
        expected_version: Some(expected),
        ..write("t", "swarm", "leader", v)
    };
    assert_eq!(
        s.memory_set(&cas(json!("a"), 5)).await.unwrap(),
        WriteOutcome::VersionMismatch { current: 0 }
    );
    let e = written(s.memory_set(&cas(json!("a"), 0)).await.unwrap());
    assert_eq!(e.version, 1);
    assert_eq!(
        s.memory_set(&cas(json!("b"), 0)).await.unwrap(),
        WriteOutcome::VersionMismatch { current: 1 },
        "create-if-absent fails once the key exists"
    );
    written(s.memory_set(&cas(json!("b"), 1)).await.unwrap());
    assert_eq!(
        s.memory_get("t", "swarm", "leader")
            .await
            .unwrap()
            .unwrap()
            .value,
        json!("b")
    );
}

pub async fn memory_ttl_hides_entry_and_purge_logs_expiry(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    let w = MemoryWrite {
        ttl_ms: Some(1000),
        ..write("t", "global", "k", json!(1))
    };
    written(s.memory_set(&w).await.unwrap());
    clock.advance_ms(999);
    assert!(s.memory_get("t", "global", "k").await.unwrap().is_some());
    clock.advance_ms(1);
    assert!(s.memory_get("t", "global", "k").await.unwrap().is_none());
    assert!(
        s.memory_list("t", "global", "", None, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let before = s.memory_seq().await.unwrap();
    assert_eq!(s.memory_purge_expired().await.unwrap(), 1);
    let changes = s.memory_changes(None, before, 10).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].kind, changes[0].key.as_str()),
        (ChangeKind::Expire, "k")
    );
    assert_eq!(s.memory_purge_expired().await.unwrap(), 0);
}

pub async fn change_log_is_ordered_and_gap_free(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    s.memory_set(&write("t", "global", "before", json!(0)))
        .await
        .unwrap();
    let start = s.memory_seq().await.unwrap();
    for i in 0..20 {
        clock.advance_ms(1);
        s.memory_set(&write("t", "global", &format!("k{}", i % 3), json!(i)))
            .await
            .unwrap();
    }
    s.memory_delete("t", "global", "k0", "w9").await.unwrap();
    let mut seen = Vec::new();
    let mut after = start;
    loop {
        let page = s.memory_changes(Some("t"), after, 7).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap().seq;
        seen.extend(page);
    }
    assert_eq!(
        seen.len(),
        21,
        "every change after the snapshot, none before it"
    );
    assert!(seen.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(seen[0].value, Some(json!(0)));
    assert_eq!(seen[19].value, Some(json!(19)));
    let last = seen.last().unwrap();
    assert_eq!(
        (last.kind, last.key.as_str(), last.writer.as_str()),
        (ChangeKind::Delete, "k0", "w9")
    );
    assert_eq!(s.memory_seq().await.unwrap(), last.seq);
    let k1: Vec<u64> = seen
        .iter()
        .filter(|e| e.key == "k1")
        .map(|e| e.version)
        .collect();
    assert_eq!(
        k1,
        (1..=7).collect::<Vec<_>>(),
        "a key's versions appear in order without gaps"
    );
}

pub async fn memory_is_isolated_by_tenant(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    s.memory_set(&write("acme", "global", "k", json!("acme")))
        .await
        .unwrap();
    s.memory_set(&write("other", "global", "k", json!("other")))
        .await
        .unwrap();
    assert_eq!(
        s.memory_get("acme", "global", "k")
            .await
            .unwrap()
            .unwrap()
            .value,
        json!("acme")
    );
    assert!(s.memory_delete("other", "global", "k", "w").await.unwrap());
    assert!(s.memory_get("acme", "global", "k").await.unwrap().is_some());
    let acme = s.memory_changes(Some("acme"), 0, 100).await.unwrap();
    assert!(acme.iter().all(|c| c.tenant == "acme"));
    assert_eq!(acme.len(), 1);
}

pub async fn memory_writes_notify_subscribers(f: &dyn StoreFactory) {
    let (s, _) = fresh(f).await;
    let mut rx = s.subscribe(Topic::Memory);
    rx.borrow_and_update();
    s.memory_set(&write("t", "global", "k", json!(1)))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(2), rx.changed())
        .await
        .expect("a memory write wakes subscribers")
        .unwrap();
}

pub async fn memory_keys_are_listed_in_bounded_pages_without_values(f: &dyn StoreFactory) {
    let (s, clock) = fresh(f).await;
    for k in ["a1", "a2", "a3", "a4", "a5", "b1"] {
        s.memory_set(&write("t", "ns", k, json!({"big": k.repeat(1000)})))
            .await
            .unwrap();
    }
    s.memory_set(&MemoryWrite {
        ttl_ms: Some(10),
        ..write("t", "ns", "a0", json!(0))
    })
    .await
    .unwrap();
    s.memory_delete("t", "ns", "a3", "w1").await.unwrap();
    s.memory_set(&write("other", "ns", "a9", json!(0)))
        .await
        .unwrap();
    clock.advance_ms(10);
    let page = |after: Option<&'static str>, limit| {
        let s = s.clone();
        async move {
            s.memory_list_keys("t", "ns", "a", after, limit)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        page(None, 2).await,
        ["a1", "a2"],
        "expired and other keys are left out"
    );
    assert_eq!(
        page(Some("a2"), 2).await,
        ["a4", "a5"],
        "deleted keys are left out"
    );
    assert!(page(Some("a5"), 2).await.is_empty());
    assert_eq!(page(None, 100).await, ["a1", "a2", "a4", "a5"]);
    let listed: Vec<String> = s
        .memory_list("t", "ns", "", None, 3)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(listed, ["a1", "a2", "a4"], "memory_list is bounded too");
    let after: Vec<String> = s
        .memory_list("t", "ns", "a", Some("a2"), 2)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(
        after,
        ["a4", "a5"],
        "memory_list pages by key like the key listing"
    );
}
