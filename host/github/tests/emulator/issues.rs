//! The issue endpoints: create, get, list (state/labels filters, sort by creation, direction,
//! `Link` pagination), update (state, state_reason, labels, title, body), replace labels, and
//! comments (create, list). Ids and numbers ascend. Issues and comments carry their author the
//! way GitHub answers (`user: {login, id, node_id, type, site_admin, ...}` and
//! `author_association`); the API's writes are the token owner's (`octo`, `OWNER`), and a test
//! opens issues as anyone else with [`super::Emulator::open_issue_as`].

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
    pub author: Author,
}

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub issue: u64,
    pub body: String,
    pub author: Author,
}

/// Who wrote an issue or comment, and their relation to the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub login: String,
    pub id: u64,
    /// `User`, `Bot` or `Organization`.
    pub kind: String,
    /// One of GitHub's `author_association` values (`OWNER`, `NONE`, ...).
    pub association: String,
}

impl Author {
    /// The token's owner, who owns the repository `octo/fleet`.
    pub fn owner() -> Self {
        Self::new("octo", "OWNER")
    }

    /// A user with a stable id derived from the login (GitHub ids do not change with case).
    pub fn new(login: &str, association: &str) -> Self {
        let id = login
            .to_ascii_lowercase()
            .bytes()
            .fold(1_469_598_103u64, |h, b| {
                (h ^ b as u64).wrapping_mul(1_099_511_628_211) % 1_000_000_007
            });
        Self {
            login: login.to_string(),
            id,
            kind: if login.ends_with("[bot]") {
                "Bot"
            } else {
                "User"
            }
            .into(),
            association: association.to_string(),
        }
    }

    /// GitHub's "simple user" shape.
    pub fn user_json(&self) -> Value {
        let l = &self.login;
        json!({
            "login": l, "id": self.id, "node_id": format!("MDQ6VXNlcj{}", self.id),
            "avatar_url": format!("https://avatars.githubusercontent.com/u/{}?v=4", self.id),
            "gravatar_id": "", "url": format!("https://api.github.com/users/{l}"),
            "html_url": format!("https://github.com/{l}"), "type": self.kind, "site_admin": false,
        })
    }
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
        "user": i.author.user_json(), "author_association": i.author.association,
    })
}

fn comment_json(c: &Comment) -> Value {
    json!({
        "id": c.id, "body": c.body,
        "user": c.author.user_json(), "author_association": c.author.association,
    })
}

/// Opens an issue written by `author` (the API's `POST /issues` is the token owner's).
pub fn create(repo: &mut Repo, input: &Value, author: Author) -> Answer {
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
        author,
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
        (Method::POST, []) => create(repo, input, Author::owner()),
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
                    let c = Comment {
                        id,
                        issue: n,
                        body: body.to_string(),
                        author: Author::owner(),
                    };
                    let v = comment_json(&c);
                    repo.comments.push(c);
                    ok(StatusCode::CREATED, v)
                }
                (Method::GET, ["comments"]) => {
                    let items = repo
                        .comments
                        .iter()
                        .filter(|c| c.issue == n)
                        .map(comment_json)
                        .collect();
                    paginate(items, q, path, base)
                }
                _ => error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}
