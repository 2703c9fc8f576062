//! The issue endpoints: create, get, list (state/labels filters, sort by creation, direction,
//! `Link` pagination), update (state, state_reason, labels, title, body), replace labels, and
//! comments (create, list). Ids and numbers ascend.

use std::collections::HashMap;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Answer, Repo, error, ok, paginate};

#[derive(Debug, Clone)]
pub struct Issue {
    pub id: u64,
    pub number: u64,
    pub title: String,
    pub body: String,
    pub state: String,
    pub state_reason: Option<String>,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub issue: u64,
    pub body: String,
}

fn labels_of(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| {
                    l.as_str()
                        .map(String::from)
                        .or_else(|| l["name"].as_str().map(String::from))
                })
                .collect()
        })
        .unwrap_or_default();
    out.dedup();
    out
}

fn issue_json(i: &Issue) -> Value {
    json!({
        "id": i.id, "number": i.number, "title": i.title, "body": i.body,
        "state": i.state, "state_reason": i.state_reason,
        "labels": i.labels.iter().enumerate()
            .map(|(n, l)| json!({"id": n + 1, "name": l})).collect::<Vec<_>>(),
        "html_url": format!("https://github.com/octo/fleet/issues/{}", i.number),
    })
}

pub fn create(repo: &mut Repo, input: &Value, _base: &str) -> Answer {
    let Some(title) = input["title"].as_str().filter(|t| !t.is_empty()) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation Failed: title is missing",
        );
    };
    let id = repo.next_id;
    repo.next_id += 1;
    let number = repo.issues.len() as u64 + 1;
    let issue = Issue {
        id,
        number,
        title: title.to_string(),
        body: input["body"].as_str().unwrap_or("").to_string(),
        state: "open".into(),
        state_reason: None,
        labels: labels_of(&input["labels"]),
    };
    let v = issue_json(&issue);
    repo.issues.push(issue);
    ok(StatusCode::CREATED, v)
}

pub fn route(
    repo: &mut Repo,
    m: &Method,
    tail: &[&str],
    input: &Value,
    q: &HashMap<String, String>,
    path: &str,
    base: &str,
) -> Answer {
    let number = |s: &str| s.parse::<u64>().ok();
    match (m.clone(), tail) {
        (Method::POST, []) => create(repo, input, base),
        (Method::GET, []) => {
            let state = q.get("state").map(String::as_str).unwrap_or("open");
            let want: Vec<&str> = q
                .get("labels")
                .map(|l| l.split(',').filter(|x| !x.is_empty()).collect())
                .unwrap_or_default();
            let mut list: Vec<&Issue> = repo
                .issues
                .iter()
                .filter(|i| state == "all" || i.state == state)
                .filter(|i| want.iter().all(|w| i.labels.iter().any(|l| l == w)))
                .collect();
            if q.get("direction").map(String::as_str) != Some("asc") {
                list.reverse();
            }
            let items = list.into_iter().map(issue_json).collect();
            paginate(items, q, path, base)
        }
        (method, [n, rest @ ..]) => {
            let Some(n) = number(n) else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            let Some(idx) = repo.issues.iter().position(|i| i.number == n) else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            match (method, rest) {
                (Method::GET, []) => ok(StatusCode::OK, issue_json(&repo.issues[idx])),
                (Method::PATCH, []) => {
                    let i = &mut repo.issues[idx];
                    if let Some(s) = input.get("state").and_then(Value::as_str) {
                        if s != "open" && s != "closed" {
                            return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
                        }
                        i.state = s.to_string();
                        i.state_reason = input
                            .get("state_reason")
                            .and_then(Value::as_str)
                            .map(String::from)
                            .or_else(|| (s == "open").then(|| "reopened".to_string()));
                    }
                    if let Some(l) = input.get("labels") {
                        i.labels = labels_of(l);
                    }
                    if let Some(t) = input.get("title").and_then(Value::as_str) {
                        i.title = t.to_string();
                    }
                    if let Some(b) = input.get("body").and_then(Value::as_str) {
                        i.body = b.to_string();
                    }
                    ok(StatusCode::OK, issue_json(i))
                }
                (Method::PUT, ["labels"]) => {
                    let i = &mut repo.issues[idx];
                    i.labels = labels_of(&input["labels"]);
                    let v: Vec<Value> = i
                        .labels
                        .iter()
                        .enumerate()
                        .map(|(k, l)| json!({"id": k + 1, "name": l}))
                        .collect();
                    ok(StatusCode::OK, Value::Array(v))
                }
                (Method::POST, ["comments"]) => {
                    let Some(body) = input["body"].as_str().filter(|b| !b.is_empty()) else {
                        return error(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "Validation Failed: body is missing",
                        );
                    };
                    let id = repo.next_id;
                    repo.next_id += 1;
                    repo.comments.push(Comment {
                        id,
                        issue: n,
                        body: body.to_string(),
                    });
                    ok(StatusCode::CREATED, json!({"id": id, "body": body}))
                }
                (Method::GET, ["comments"]) => {
                    let items = repo
                        .comments
                        .iter()
                        .filter(|c| c.issue == n)
                        .map(|c| json!({"id": c.id, "body": c.body}))
                        .collect();
                    paginate(items, q, path, base)
                }
                _ => error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}
