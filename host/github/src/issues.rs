//! The issue mirror: every task has an issue that people can read, and people can submit tasks
//! by opening an issue from `templates/sentinel-task.yml`. The issue is a *projection*: GitHub
//! issues cannot be updated conditionally, so they can never be the authority for a claim; the
//! task record in the queue document is. This module opens issues, keeps their labels
//! (`sentinel`, `type:<t>`, `priority:<n>`, `state:<s>`, `tenant:<t>`) in step with committed
//! state, posts the result or error as a comment, closes completed/dead/cancelled tasks, and
//! parses submitted issues, importing only those whose author the submitter policy
//! ([`crate::submitters`]) admits, in the tenant it gives them; the others are closed with a
//! comment saying why. It must never decide a task's state.
//!
//! Mirror writes happen after the queue commit they reflect; they are best effort (a failure is
//! logged) and two workers' mirror writes may land out of order, so labels are eventually
//! consistent, not authoritative.

use std::sync::Arc;

use sentinel_coord::StoreError;
use sentinel_coord::model::{NewTask, TaskState};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Api, ApiError, Method};
use crate::queue::record::TaskRecord;
use crate::submitters::SubmitterPolicy;

/// The label the issue template puts on a submission.
pub const SUBMIT_LABEL: &str = "sentinel-task";
/// The label on every mirrored task.
pub const TASK_LABEL: &str = "sentinel";
/// GitHub refuses issue bodies and comments over 65,536 characters.
const MAX_BODY: usize = 60_000;

pub struct Issues {
    api: Arc<Api>,
    submitters: SubmitterPolicy,
}

#[derive(Debug, Deserialize)]
pub struct IssueAnswer {
    pub number: u64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub labels: Vec<LabelAnswer>,
    #[serde(default)]
    pub pull_request: Option<Value>,
    /// The author; `null` for some deleted accounts.
    #[serde(default)]
    pub user: Option<UserAnswer>,
    /// GitHub's `OWNER`, `MEMBER`, `COLLABORATOR`, `CONTRIBUTOR`, `FIRST_TIME_CONTRIBUTOR`,
    /// `FIRST_TIMER`, `MANNEQUIN` or `NONE`.
    #[serde(default)]
    pub author_association: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct UserAnswer {
    pub login: String,
}

#[derive(Debug, Deserialize)]
pub struct LabelAnswer {
    pub name: String,
}

pub fn labels(tenant: &str, task_type: &str, priority: i32, state: TaskState) -> Vec<String> {
    vec![
        TASK_LABEL.to_string(),
        format!("type:{task_type}"),
        format!("priority:{priority}"),
        format!("state:{}", state.as_str()),
        format!("tenant:{tenant}"),
    ]
}

fn fenced(v: &Value) -> String {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    if text.len() > MAX_BODY {
        return "_(too large to show here; the queue record holds it)_".to_string();
    }
    format!("```json\n{text}\n```")
}

fn shown(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

impl Issues {
    /// `submitters` must be valid ([`SubmitterPolicy::validate`]).
    pub fn new(api: Arc<Api>, submitters: SubmitterPolicy) -> Self {
        Self { api, submitters }
    }

    /// Opens the issue of a task about to be enqueued; returns its number.
    pub async fn open(&self, id: &str, t: &NewTask, state: TaskState) -> Result<u64, ApiError> {
        let body = format!(
            "Sentinel task `{id}` (tenant `{}`, type `{}`, priority {}).\n\n\
             Payload:\n\n{}\n\n<!-- sentinel-task-id: {id} -->\n",
            t.tenant,
            t.task_type,
            t.priority,
            fenced(&shown(&t.payload))
        );
        let req = json!({
            "title": format!("[sentinel] {} {id}", t.task_type),
            "body": body,
            "labels": labels(&t.tenant, &t.task_type, t.priority, state),
        });
        // Not idempotent: a retried creation after a lost answer would open a second issue.
        let reply = self
            .api
            .send(
                Method::Post,
                &self.api.repo_path("/issues"),
                Some(&req),
                false,
            )
            .await?;
        Ok(reply.json::<IssueAnswer>()?.number)
    }

    /// Brings the issue of `rec` in step with a state change from `before`.
    pub async fn mirror(&self, before: Option<TaskState>, rec: &TaskRecord) {
        let Some(number) = rec.issue else { return };
        if before == Some(rec.state) {
            return;
        }
        if let Err(e) = self.mirror_inner(number, rec).await {
            tracing::warn!(task = %rec.id, issue = number, error = %e,
                "could not update the task's issue; its labels lag the queue record");
        }
    }

    async fn mirror_inner(&self, number: u64, rec: &TaskRecord) -> Result<(), ApiError> {
        let comment = match rec.state {
            TaskState::Completed => Some(format!(
                "Completed by `{}` (attempt {}, fence {}).\n\nResult:\n\n{}",
                rec.worker_id.as_deref().unwrap_or("?"),
                rec.attempt,
                rec.fence,
                fenced(&shown(&rec.output_bytes().unwrap_or_default()))
            )),
            TaskState::Failed | TaskState::Dead => Some(format!(
                "{} (attempt {}): {}",
                if rec.state == TaskState::Dead {
                    "Dead-lettered"
                } else {
                    "Failed, will retry"
                },
                rec.attempt,
                rec.error.as_deref().unwrap_or("unknown error")
            )),
            TaskState::Cancelled => Some("Cancelled.".to_string()),
            TaskState::Pending | TaskState::Running => None,
        };
        if let Some(c) = comment {
            let c: String = c.chars().take(MAX_BODY).collect();
            self.api
                .send(
                    Method::Post,
                    &self.api.repo_path(&format!("/issues/{number}/comments")),
                    Some(&json!({ "body": c })),
                    false,
                )
                .await?;
        }
        let mut patch = json!({
            "labels": labels(&rec.tenant, &rec.task_type, rec.priority, rec.state),
        });
        match rec.state {
            TaskState::Completed => {
                patch["state"] = json!("closed");
                patch["state_reason"] = json!("completed");
            }
            TaskState::Dead | TaskState::Cancelled => {
                patch["state"] = json!("closed");
                patch["state_reason"] = json!("not_planned");
            }
            _ => patch["state"] = json!("open"),
        }
        self.api
            .send(
                Method::Patch,
                &self.api.repo_path(&format!("/issues/{number}")),
                Some(&patch),
                true,
            )
            .await?;
        Ok(())
    }

    /// Open issues carrying [`SUBMIT_LABEL`] and no `state:` label yet: people's submissions,
    /// oldest first, parsed into tasks with id `issue-<number>` in the tenant the submitter
    /// policy gives their author. Submissions from authors the policy does not admit, naming
    /// another tenant than that one, or unparseable, are refused: closed, then answered with a
    /// comment.
    pub async fn submissions(&self) -> Result<Vec<(u64, String, NewTask)>, StoreError> {
        let path = self.api.repo_path(&format!(
            "/issues?labels={SUBMIT_LABEL}&state=open&sort=created&direction=asc&per_page=100"
        ));
        let open: Vec<IssueAnswer> = self.api.get_all(&path).await?;
        let mut out = Vec::new();
        for issue in open {
            if issue.pull_request.is_some()
                || issue.labels.iter().any(|l| l.name.starts_with("state:"))
            {
                continue;
            }
            let n = issue.number;
            let login = issue.user.as_ref().map(|u| u.login.as_str());
            let association = issue.author_association.as_deref().unwrap_or("NONE");
            let who = login.map_or_else(|| "the author".to_string(), |l| format!("@{l}"));
            let admission = self.submitters.admit(login, association);
            let Some(tenant) = admission.tenant() else {
                tracing::warn!(
                    issue = n,
                    login = login.unwrap_or("(none)"),
                    association,
                    "refusing a task submission: the submitter policy does not admit its author"
                );
                let why = format!(
                    "Sentinel runs submissions only from {}; {who} (association {association}) \
                     is not allowed to submit. Nothing was run.",
                    self.submitters.describe()
                );
                self.refuse(n, &why).await;
                continue;
            };
            let task = parse_submission(issue.body.as_deref().unwrap_or(""))
                .and_then(|s| s.placed(tenant, &who));
            match task {
                Ok(task) => out.push((n, format!("issue-{n}"), task)),
                Err(why) => {
                    tracing::warn!(issue = n, %why, "rejecting a task submission");
                    self.refuse(n, &format!("Sentinel cannot run this: {why}"))
                        .await;
                }
            }
        }
        Ok(out)
    }

    /// Closes a submission as not planned with label `state:rejected` (so it is never listed
    /// again), then explains why in a comment. Closing first means a failed close (retried at
    /// the next poll) never repeats the comment. Best effort, like the mirror.
    async fn refuse(&self, n: u64, why: &str) {
        let closed = self
            .api
            .send(
                Method::Patch,
                &self.api.repo_path(&format!("/issues/{n}")),
                Some(&json!({"state": "closed", "state_reason": "not_planned",
                             "labels": [TASK_LABEL, "state:rejected"]})),
                true,
            )
            .await;
        if let Err(e) = closed {
            tracing::warn!(issue = n, error = %e, "could not close a refused submission");
            return;
        }
        let body: String = why.chars().take(MAX_BODY).collect();
        if let Err(e) = self
            .api
            .send(
                Method::Post,
                &self.api.repo_path(&format!("/issues/{n}/comments")),
                Some(&json!({ "body": body })),
                false,
            )
            .await
        {
            tracing::warn!(issue = n, error = %e, "could not explain a refused submission");
        }
    }

    /// Closes issues opened for a batch whose commit was then refused.
    pub async fn abandon(&self, numbers: &[u64], why: &str) {
        for n in numbers {
            let _ = self
                .api
                .send(
                    Method::Patch,
                    &self.api.repo_path(&format!("/issues/{n}")),
                    Some(&json!({"state": "closed", "state_reason": "not_planned",
                                 "labels": [TASK_LABEL, "state:rejected"],
                                 "body": format!("Submission refused: {why}")})),
                    true,
                )
                .await;
        }
    }
}

/// A parsed issue-form submission, not yet placed in a tenant.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The task, in [`sentinel_coord::model::DEFAULT_TENANT`] until [`Self::placed`].
    pub task: NewTask,
    /// The form's tenant field, if filled in.
    pub tenant: Option<String>,
}

impl Submission {
    /// The task in `tenant` (the one the submitter policy gives the author, `who`); refused
    /// when the form names another one.
    pub fn placed(self, tenant: &str, who: &str) -> Result<NewTask, String> {
        match self.tenant {
            Some(t) if t != tenant => Err(format!(
                "{who} may submit only to tenant `{tenant}`, not `{t}` (leave the tenant empty)"
            )),
            _ => Ok(self.task.with_tenant(tenant)),
        }
    }
}

/// Parses the body GitHub renders from the issue form (`### <label>` sections). The priority
/// must be inside its documented range.
pub fn parse_submission(body: &str) -> Result<Submission, String> {
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in body.lines() {
        if let Some(h) = line.strip_prefix("### ") {
            sections.push((h.trim().to_ascii_lowercase(), String::new()));
        } else if let Some((_, text)) = sections.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    let field = |name: &str| {
        sections
            .iter()
            .find(|(h, _)| h == name)
            .map(|(_, t)| t.trim().to_string())
            .filter(|t| !t.is_empty() && t != "_No response_")
    };
    let task_type = field("task type").ok_or("the task type is missing")?;
    let priority = match field("priority") {
        Some(p) => p
            .parse::<i32>()
            .map_err(|_| format!("priority {p:?} is not an integer"))?,
        None => 0,
    };
    let payload = field("payload").unwrap_or_else(|| "{}".into());
    let payload = payload
        .trim()
        .trim_start_matches("```json")
        .trim_start_matches("```")
        .trim_end_matches("```")
        .trim()
        .to_string();
    let value: Value =
        serde_json::from_str(&payload).map_err(|e| format!("the payload is not JSON: {e}"))?;
    let task = NewTask::json(task_type, &value).with_priority(priority);
    task.validate().map_err(|e| e.to_string())?;
    Ok(Submission {
        task,
        tenant: field("tenant"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_rendered_issue_form() {
        let body = "### Task type\n\necho\n\n### Priority\n\n5\n\n### Tenant\n\n_No response_\n\n\
                    ### Payload\n\n```json\n{\"msg\": \"hi\"}\n```\n";
        let s = parse_submission(body).unwrap();
        assert_eq!(s.tenant, None);
        let t = s.placed("acme", "@a").unwrap();
        assert_eq!(
            (t.task_type.as_str(), t.priority, t.tenant.as_str()),
            ("echo", 5, "acme")
        );
        assert_eq!(t.payload, br#"{"msg":"hi"}"#);
        assert!(parse_submission("### Task type\n\nx\n\n### Payload\n\nnot json").is_err());
        assert!(parse_submission("nothing").is_err());
        let far = parse_submission("### Task type\n\nx\n\n### Priority\n\n2000000\n");
        assert!(far.unwrap_err().contains("priority"));
    }

    #[test]
    fn a_form_naming_another_tenant_than_the_authors_is_refused() {
        let s = parse_submission("### Task type\n\nx\n\n### Tenant\n\nbeta\n").unwrap();
        assert_eq!(s.tenant.as_deref(), Some("beta"));
        assert_eq!(s.clone().placed("beta", "@a").unwrap().tenant, "beta");
        let e = s.placed("acme", "@a").unwrap_err();
        assert!(e.contains("only to tenant `acme`, not `beta`"), "{e}");
    }
}
