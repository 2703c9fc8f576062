//! Who may submit tasks by opening an issue: only authors the submitter policy admits, by login
//! (into the login's tenant) or by GitHub's `author_association` (into the association tenant).
//! Anyone else's issue is closed as not planned with a comment saying why, and nothing runs.

mod emulator;

use emulator::{Author, Emulator};
use sentinel_coord::model::*;
use sentinel_coord::{ManualClock, QueueStore, StoreError};
use sentinel_github::{GithubStore, SubmitterPolicy};

const FORM: &str = "### Task type\n\necho\n\n### Priority\n\n2\n\n### Tenant\n\n_No response_\n\n### Payload\n\n```json\n{\"msg\": \"hi\"}\n```\n";

async fn store_with(emu: &Emulator, policy: SubmitterPolicy) -> GithubStore {
    let mut config = emu.quiet_config();
    config.submitters = policy;
    GithubStore::connect(config, ManualClock::new())
        .await
        .unwrap()
}

fn submit_as(emu: &Emulator, login: &str, association: &str) -> u64 {
    emu.open_issue_as(
        Author::new(login, association),
        "[sentinel] please",
        FORM,
        &["sentinel-task"],
    )
}

fn issue(emu: &Emulator, n: u64) -> emulator::Issue {
    emu.with_repo(|r| r.issues[n as usize - 1].clone())
}

fn comments_on(emu: &Emulator, n: u64) -> Vec<String> {
    emu.with_repo(|r| {
        r.comments
            .iter()
            .filter(|c| c.issue == n)
            .map(|c| c.body.clone())
            .collect()
    })
}

async fn all_tasks(store: &GithubStore) -> Vec<Task> {
    store.list_tasks(&TaskFilter::default()).await.unwrap()
}

fn assert_refused(emu: &Emulator, n: u64, needle: &str) {
    let i = issue(emu, n);
    assert_eq!(
        (i.state.as_str(), i.state_reason.as_deref()),
        ("closed", Some("not_planned"))
    );
    assert_eq!(i.labels, ["sentinel", "state:rejected"]);
    let comments = comments_on(emu, n);
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(comments[0].contains(needle), "{}", comments[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outsiders_submission_is_closed_with_a_comment_and_never_enqueued() {
    let emu = Emulator::start().await;
    let store = store_with(&emu, SubmitterPolicy::default()).await;
    let n = submit_as(&emu, "mallory", "NONE");

    let writes = emu.control().writes;
    assert!(store.import_submissions().await.unwrap().is_empty());
    assert_eq!(
        emu.control().writes - writes,
        2,
        "an outsider's issue costs one close and one comment, no queue commit"
    );
    assert_refused(
        &emu,
        n,
        "Sentinel runs submissions only from OWNER, MEMBER or COLLABORATOR accounts; \
         @mallory (association NONE) is not allowed to submit. Nothing was run.",
    );
    assert!(all_tasks(&store).await.is_empty());

    assert!(store.import_submissions().await.unwrap().is_empty());
    assert_eq!(
        comments_on(&emu, n).len(),
        1,
        "refused once, not every poll"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collaborators_submission_is_enqueued_in_the_association_tenant() {
    let emu = Emulator::start().await;
    let policy = SubmitterPolicy::default().with_association_tenant("community");
    let store = store_with(&emu, policy).await;
    let n = submit_as(&emu, "carol", "COLLABORATOR");

    let id = format!("issue-{n}");
    assert_eq!(store.import_submissions().await.unwrap(), [id.clone()]);
    let task = store.get_task("community", &id).await.unwrap().unwrap();
    assert_eq!((task.task_type.as_str(), task.priority), ("echo", 2));
    assert!(store.get_task(DEFAULT_TENANT, &id).await.unwrap().is_none());
    let i = issue(&emu, n);
    assert_eq!(i.state, "open");
    assert!(
        i.labels.contains(&"tenant:community".to_string()),
        "{:?}",
        i.labels
    );
    assert!(comments_on(&emu, n).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_login_without_association_is_accepted_and_runs_in_its_tenant() {
    let emu = Emulator::start().await;
    let policy = SubmitterPolicy::default().with_login("dana", "acme");
    let store = store_with(&emu, policy).await;
    let n = submit_as(&emu, "dana", "NONE");

    let id = format!("issue-{n}");
    assert_eq!(store.import_submissions().await.unwrap(), [id.clone()]);
    let claimed = store
        .claim(&ClaimRequest {
            worker_id: "w1".into(),
            task_types: None,
            tenants: Some(vec!["acme".into()]),
            limit: 10,
            lease_ms: 60_000,
            incarnation: 0,
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (claimed[0].id.as_str(), claimed[0].tenant.as_str()),
        (id.as_str(), "acme")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_login_wins_over_an_admitted_association() {
    let emu = Emulator::start().await;
    let policy = SubmitterPolicy::default().with_login("erin", "acme");
    let store = store_with(&emu, policy).await;
    let n = submit_as(&emu, "erin", "MEMBER");

    store.import_submissions().await.unwrap();
    assert!(
        store
            .get_task("acme", &format!("issue-{n}"))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contributor_not_listed_is_refused() {
    let emu = Emulator::start().await;
    let policy = SubmitterPolicy::default().with_login("dana", "acme");
    let store = store_with(&emu, policy).await;
    let n = submit_as(&emu, "frank", "CONTRIBUTOR");

    assert!(store.import_submissions().await.unwrap().is_empty());
    assert_refused(
        &emu,
        n,
        "OWNER, MEMBER or COLLABORATOR accounts and a list of named accounts; \
         @frank (association CONTRIBUTOR) is not allowed",
    );
    assert!(
        !comments_on(&emu, n)[0].contains("dana"),
        "the public comment names no listed login"
    );
    assert!(all_tasks(&store).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_match_ignoring_case_as_on_github() {
    let emu = Emulator::start().await;
    let policy = SubmitterPolicy::nobody().with_login("Grace-Hopper", "navy");
    let store = store_with(&emu, policy).await;
    let n = submit_as(&emu, "grace-HOPPER", "NONE");
    let owner = emu.open_issue("[sentinel] mine", FORM, &["sentinel-task"]);

    assert_eq!(
        store.import_submissions().await.unwrap(),
        [format!("issue-{n}")]
    );
    assert!(
        store
            .get_task("navy", &format!("issue-{n}"))
            .await
            .unwrap()
            .is_some()
    );
    assert_refused(
        &emu,
        owner,
        "only from a list of named accounts; @octo (association OWNER) is not allowed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_naming_another_tenant_than_its_authors_is_refused() {
    let emu = Emulator::start().await;
    let policy = SubmitterPolicy::default().with_login("dana", "acme");
    let store = store_with(&emu, policy).await;
    let body = FORM.replace("### Tenant\n\n_No response_", "### Tenant\n\nbeta");
    let n = emu.open_issue_as(Author::new("dana", "NONE"), "x", &body, &["sentinel-task"]);

    assert!(store.import_submissions().await.unwrap().is_empty());
    assert_refused(
        &emu,
        n,
        "@dana may submit only to tenant `acme`, not `beta`",
    );
    assert!(all_tasks(&store).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_with_an_unknown_association_is_refused_when_the_store_opens() {
    let emu = Emulator::start().await;
    let mut config = emu.quiet_config();
    config.submitters = SubmitterPolicy::default().with_associations(["OWNER", "MAINTAINER"]);
    let Err(e) = GithubStore::connect(config, ManualClock::new()).await else {
        panic!("a policy admitting MAINTAINER opened a store");
    };
    assert!(
        matches!(&e, StoreError::Invalid(m) if m.contains("unknown association \"MAINTAINER\"")),
        "{e}"
    );

    let from_json: SubmitterPolicy =
        serde_json::from_str(r#"{"associations": ["owner"]}"#).unwrap();
    assert!(
        from_json.validate().is_err(),
        "association names are GitHub's, in upper case"
    );
    assert_eq!(emu.control().counted, 0, "refused before any request");
}
