//! The git data endpoints: refs (get, matching, create, fast-forward-checked update, delete),
//! commits, trees (nested paths, inline content, `sha: null` deletion, recursive listing) and
//! blobs. Objects are content-addressed, as in git.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use axum::http::{Method, StatusCode};
use base64::Engine;
use serde_json::{Value, json};

use super::{Answer, Repo, error, ok, paginate, sha_of};

#[derive(Debug, Clone)]
pub enum Obj {
    Blob(Vec<u8>),
    /// name → (mode, type, sha)
    Tree(BTreeMap<String, (String, String, String)>),
    Commit {
        tree: String,
        parents: Vec<String>,
        message: String,
    },
}

fn store(repo: &mut Repo, o: Obj) -> String {
    let sha = match &o {
        Obj::Blob(b) => sha_of("blob", b),
        Obj::Tree(t) => sha_of("tree", format!("{t:?}").as_bytes()),
        Obj::Commit {
            tree,
            parents,
            message,
        } => sha_of("commit", format!("{tree}|{parents:?}|{message}").as_bytes()),
    };
    repo.objects.insert(sha.clone(), o);
    sha
}

fn ref_json(name: &str, sha: &str) -> Value {
    json!({"ref": name, "node_id": format!("REF_{name}"), "url": format!("/git/{name}"),
           "object": {"sha": sha, "type": "commit", "url": format!("/git/commits/{sha}")}})
}

fn commit_json(sha: &str, o: &Obj) -> Value {
    let Obj::Commit {
        tree,
        parents,
        message,
    } = o
    else {
        unreachable!()
    };
    json!({"sha": sha, "message": message, "tree": {"sha": tree},
           "parents": parents.iter().map(|p| json!({"sha": p})).collect::<Vec<_>>(),
           "author": {"name": "sentinel", "email": "sentinel@example.com"}})
}

fn is_ancestor(repo: &Repo, ancestor: &str, of: &str) -> bool {
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([of.to_string()]);
    while let Some(c) = queue.pop_front() {
        if c == ancestor {
            return true;
        }
        if !seen.insert(c.clone()) {
            continue;
        }
        if let Some(Obj::Commit { parents, .. }) = repo.objects.get(&c) {
            queue.extend(parents.iter().cloned());
        }
    }
    false
}

/// Applies one entry (`path` split in components) to a tree, returning the new tree's sha or
/// `None` if it became empty.
fn apply(
    repo: &mut Repo,
    tree: Option<&str>,
    comps: &[&str],
    leaf: Option<(String, String, String)>,
) -> Result<Option<String>, String> {
    let mut entries = match tree.and_then(|t| repo.objects.get(t)) {
        Some(Obj::Tree(e)) => e.clone(),
        _ => BTreeMap::new(),
    };
    let name = comps[0].to_string();
    if comps.len() == 1 {
        match leaf {
            Some(l) => {
                entries.insert(name, l);
            }
            None => {
                entries.remove(&name);
            }
        }
    } else {
        let sub = entries
            .get(&name)
            .filter(|(_, kind, _)| kind == "tree")
            .map(|(_, _, s)| s.clone());
        match apply(repo, sub.as_deref(), &comps[1..], leaf)? {
            Some(s) => {
                entries.insert(name, ("040000".into(), "tree".into(), s));
            }
            None => {
                entries.remove(&name);
            }
        }
    }
    if entries.is_empty() {
        return Ok(None);
    }
    Ok(Some(store(repo, Obj::Tree(entries))))
}

fn flatten(repo: &Repo, sha: &str, prefix: &str, out: &mut Vec<Value>) {
    if let Some(Obj::Tree(entries)) = repo.objects.get(sha) {
        for (name, (mode, kind, s)) in entries {
            let path = format!("{prefix}{name}");
            let size = match repo.objects.get(s) {
                Some(Obj::Blob(b)) => json!(b.len()),
                _ => Value::Null,
            };
            out.push(json!({"path": path, "mode": mode, "type": kind, "sha": s, "size": size}));
            if kind == "tree" {
                flatten(repo, s, &format!("{path}/"), out);
            }
        }
    }
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
    match (m.clone(), tail) {
        (Method::GET, ["ref", name @ ..]) => {
            let full = format!("refs/{}", name.join("/"));
            match repo.refs.get(&full) {
                Some(sha) => ok(StatusCode::OK, ref_json(&full, sha)),
                None => error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        (Method::GET, ["matching-refs", prefix @ ..]) => {
            let full = format!("refs/{}", prefix.join("/"));
            let items: Vec<Value> = repo
                .refs
                .iter()
                .filter(|(n, _)| n.starts_with(&full))
                .map(|(n, s)| ref_json(n, s))
                .collect();
            paginate(items, q, path, base)
        }
        (Method::POST, ["refs"]) => {
            let name = input["ref"].as_str().unwrap_or("");
            let sha = input["sha"].as_str().unwrap_or("");
            if !name.starts_with("refs/") || name.matches('/').count() < 2 {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Reference name must start with 'refs/' and have at least two slashes.",
                );
            }
            if !matches!(repo.objects.get(sha), Some(Obj::Commit { .. })) {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "Object does not exist");
            }
            if repo.refs.contains_key(name) {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "Reference already exists");
            }
            repo.refs.insert(name.to_string(), sha.to_string());
            ok(StatusCode::CREATED, ref_json(name, sha))
        }
        (Method::PATCH, ["refs", name @ ..]) => {
            let full = format!("refs/{}", name.join("/"));
            let sha = input["sha"].as_str().unwrap_or("").to_string();
            let force = input["force"].as_bool().unwrap_or(false);
            let Some(current) = repo.refs.get(&full).cloned() else {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "Reference does not exist");
            };
            if !matches!(repo.objects.get(&sha), Some(Obj::Commit { .. })) {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "Object does not exist");
            }
            if !force && !is_ancestor(repo, &current, &sha) {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Update is not a fast forward",
                );
            }
            repo.refs.insert(full.clone(), sha.clone());
            ok(StatusCode::OK, ref_json(&full, &sha))
        }
        (Method::DELETE, ["refs", name @ ..]) => {
            let full = format!("refs/{}", name.join("/"));
            match repo.refs.remove(&full) {
                Some(_) => ok(StatusCode::NO_CONTENT, Value::Null),
                None => error(StatusCode::UNPROCESSABLE_ENTITY, "Reference does not exist"),
            }
        }
        (Method::POST, ["commits"]) => {
            let tree = input["tree"].as_str().unwrap_or("").to_string();
            if !matches!(repo.objects.get(&tree), Some(Obj::Tree(_))) {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "Tree SHA does not exist");
            }
            let parents: Vec<String> = input["parents"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            if parents
                .iter()
                .any(|p| !matches!(repo.objects.get(p), Some(Obj::Commit { .. })))
            {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Parent SHA does not exist or is not a commit object",
                );
            }
            let o = Obj::Commit {
                tree,
                parents,
                message: input["message"].as_str().unwrap_or("").to_string(),
            };
            let sha = store(repo, o.clone());
            ok(StatusCode::CREATED, commit_json(&sha, &o))
        }
        (Method::GET, ["commits", sha]) => match repo.objects.get(*sha) {
            Some(o @ Obj::Commit { .. }) => ok(StatusCode::OK, commit_json(sha, o)),
            _ => error(StatusCode::NOT_FOUND, "Not Found"),
        },
        (Method::POST, ["trees"]) => create_tree(repo, input),
        (Method::GET, ["trees", sha]) => {
            if !matches!(repo.objects.get(*sha), Some(Obj::Tree(_))) {
                return error(StatusCode::NOT_FOUND, "Not Found");
            }
            let mut out = Vec::new();
            if q.contains_key("recursive") {
                flatten(repo, sha, "", &mut out);
            } else if let Some(Obj::Tree(e)) = repo.objects.get(*sha) {
                for (name, (mode, kind, s)) in e {
                    out.push(json!({"path": name, "mode": mode, "type": kind, "sha": s}));
                }
            }
            ok(
                StatusCode::OK,
                json!({"sha": sha, "tree": out, "truncated": false}),
            )
        }
        (Method::GET, ["blobs", sha]) => match repo.objects.get(*sha) {
            Some(Obj::Blob(b)) => {
                // GitHub wraps base64 at 60 columns.
                let enc = base64::engine::general_purpose::STANDARD.encode(b);
                let wrapped: Vec<String> = enc
                    .as_bytes()
                    .chunks(60)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect();
                ok(
                    StatusCode::OK,
                    json!({"sha": sha, "size": b.len(), "encoding": "base64",
                           "content": wrapped.join("\n") + "\n"}),
                )
            }
            _ => error(StatusCode::NOT_FOUND, "Not Found"),
        },
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn create_tree(repo: &mut Repo, input: &Value) -> Answer {
    let mut root = match input.get("base_tree").and_then(Value::as_str) {
        Some(b) => {
            if !matches!(repo.objects.get(b), Some(Obj::Tree(_))) {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "base_tree is not a valid tree",
                );
            }
            Some(b.to_string())
        }
        None => None,
    };
    let Some(entries) = input["tree"].as_array() else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid request: tree is missing",
        );
    };
    for e in entries {
        let path = e["path"].as_str().unwrap_or("");
        let comps: Vec<&str> = path.split('/').collect();
        if path.is_empty()
            || comps
                .iter()
                .any(|c| c.is_empty() || *c == "." || *c == "..")
        {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid tree path");
        }
        let mode = e["mode"].as_str().unwrap_or("100644").to_string();
        let leaf = if let Some(content) = e.get("content").and_then(Value::as_str) {
            let sha = store(repo, Obj::Blob(content.as_bytes().to_vec()));
            Some((mode, "blob".to_string(), sha))
        } else if e.get("sha").is_some_and(Value::is_null) {
            None
        } else if let Some(sha) = e.get("sha").and_then(Value::as_str) {
            if !repo.objects.contains_key(sha) {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid tree info: sha does not exist",
                );
            }
            Some((
                mode,
                e["type"].as_str().unwrap_or("blob").to_string(),
                sha.to_string(),
            ))
        } else {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Must supply either content or sha",
            );
        };
        root = match apply(repo, root.as_deref(), &comps, leaf) {
            Ok(r) => r,
            Err(m) => return error(StatusCode::UNPROCESSABLE_ENTITY, &m),
        };
    }
    let sha = match root {
        Some(s) => s,
        None => store(repo, Obj::Tree(BTreeMap::new())),
    };
    let mut listing = Vec::new();
    if let Some(Obj::Tree(e)) = repo.objects.get(&sha) {
        for (name, (mode, kind, s)) in e {
            listing.push(json!({"path": name, "mode": mode, "type": kind, "sha": s}));
        }
    }
    ok(
        StatusCode::CREATED,
        json!({"sha": sha, "tree": listing, "truncated": false}),
    )
}
