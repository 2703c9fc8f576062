//! Tasks are issues: the mirror labels, comments and closes them as the queue record changes,
//! and people's issue-form submissions become tasks exactly once.

mod emulator;

use std::sync::Arc;

use sentinel_coord::model::*;
use sentinel_coord::{ManualClock, QueueStore};
use sentinel_github::GithubStore;

fn labels(emu: &emulator::Emulator, number: u64) -> Vec<String> {
    emu.with_repo(|r| r.issues[number as usize - 1].labels.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_mirrored_to_its_issue_through_its_life() {
    let emu = emulator::Emulator::start().await;
    let store = GithubStore::connect(emu.quiet_config(), ManualClock::new())
        .await
        .unwrap();
    let id = store
        .enqueue(&[NewTask::json("echo", &serde_json::json!({"msg": "hi"})).with_priority(3)])
        .await
        .unwrap()
        .remove(0);
    let issue = emu.with_repo(|r| r.issues[0].clone());
    assert!(issue.title.contains(&id));
    assert!(issue.body.contains("```json") && issue.body.contains("\"msg\": \"hi\""));
    assert_eq!(
        issue.labels,
        [
            "sentinel",
            "type:echo",
            "priority:3",
            "state:pending",
            "tenant:default"
        ]
    );

    let t = store
        .claim(&ClaimRequest {
            worker_id: "w1".into(),
            task_types: None,
            tenants: None,
            limit: 1,
            lease_ms: 60_000,
            incarnation: 0,
        })
        .await
        .unwrap()
        .remove(0);
    assert!(labels(&emu, 1).contains(&"state:running".to_string()));

    store
        .complete(&[Completion {
            tenant: t.tenant,
            task_id: t.id,
            fence: t.fence,
            output: br#"{"echo":"hi"}"#.to_vec(),
        }])
        .await
        .unwrap();
    let (issue, comments) = emu.with_repo(|r| (r.issues[0].clone(), r.comments.clone()));
    assert_eq!(
        (issue.state.as_str(), issue.state_reason.as_deref()),
        ("closed", Some("completed"))
    );
    assert!(issue.labels.contains(&"state:completed".to_string()));
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0].body.contains("\"echo\": \"hi\""),
        "{}",
        comments[0].body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_opens_no_issue() {
    let emu = emulator::Emulator::start().await;
    let store = GithubStore::connect(emu.quiet_config(), ManualClock::new())
        .await
        .unwrap();
    let err = store
        .enqueue(&[
            NewTask::new("t", "ok"),
            NewTask::new("t", "bad").depends_on(["missing"]),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, sentinel_coord::StoreError::Invalid(_)));
    assert_eq!(emu.with_repo(|r| r.issues.len()), 0);
}

const FORM_BODY: &str = "### Task type\n\necho\n\n### Priority\n\n7\n\n### Tenant\n\n_No response_\n\n### Payload\n\n```json\n{\"msg\": \"from a person\"}\n```\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_form_submissions_become_tasks_once() {
    let emu = emulator::Emulator::start().await;
    let clock = ManualClock::new();
    let a = Arc::new(
        GithubStore::connect(emu.quiet_config(), clock.clone())
            .await
            .unwrap(),
    );
    let b = Arc::new(
        GithubStore::connect(emu.quiet_config(), clock.clone())
            .await
            .unwrap(),
    );
    let n = emu.open_issue("Please echo", FORM_BODY, &["sentinel-task"]);
    let bad = emu.open_issue(
        "Broken",
        "### Task type\n\necho\n\n### Payload\n\nnot json\n",
        &["sentinel-task"],
    );

    let (ra, rb) = tokio::join!(a.import_submissions(), b.import_submissions());
    let mut imported = ra.unwrap();
    imported.extend(rb.unwrap());
    assert_eq!(imported, [format!("issue-{n}")], "imported exactly once");

    let task = a
        .get_task(DEFAULT_TENANT, &format!("issue-{n}"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((task.task_type.as_str(), task.priority), ("echo", 7));
    assert_eq!(
        task.payload_json().unwrap(),
        serde_json::json!({"msg": "from a person"})
    );
    assert!(labels(&emu, n).contains(&"state:pending".to_string()));
    assert!(
        a.import_submissions().await.unwrap().is_empty(),
        "nothing left to import"
    );

    let rejected = emu.with_repo(|r| r.issues[bad as usize - 1].clone());
    assert_eq!(rejected.state, "closed");
    assert!(emu.with_repo(|r| {
        r.comments
            .iter()
            .any(|c| c.issue == bad && c.body.contains("not JSON"))
    }));
}
