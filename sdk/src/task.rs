//! Tasks, outputs and task errors: the plain-Rust side of `sentinel:plugin/types`.
//!
//! This module owns [`Task`] (what an executor receives and a strategy sees),
//! [`Output`] (what an executor returns) and [`TaskError`] (why a task failed, and
//! whether a retry could help), with the JSON helpers plugins use on payloads.
//!
//! It is pure data: it must never call a host import, so everything here works (and is
//! tested) on the host target too. The conversions from and to the generated WIT types
//! live next to each world's bindings (`executor`, `strategy`).

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// One unit of work, as a plugin sees it.
///
/// The payload is opaque bytes to the host; by convention it is JSON, which
/// [`Task::json`] decodes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Task {
    /// Unique id of the task.
    pub id: String,
    /// The task type, which selects the executor.
    pub task_type: String,
    /// The tenant that submitted the task.
    pub tenant: String,
    /// Higher runs first.
    pub priority: i32,
    /// 1 on the first run, incremented on every retry.
    pub attempt: u32,
    /// The payload, JSON by convention.
    pub payload: Vec<u8>,
    /// Free-form metadata attached by the submitter.
    pub metadata: Vec<(String, String)>,
}

impl Task {
    /// A task of `task_type` with `payload`, attempt 1 and everything else empty.
    ///
    /// Meant for tests of plugin logic on the host:
    ///
    /// ```
    /// let task = sentinel_sdk::Task::new("echo", b"{}".to_vec());
    /// assert_eq!(task.attempt, 1);
    /// ```
    pub fn new(task_type: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Task {
            task_type: task_type.into(),
            payload: payload.into(),
            attempt: 1,
            ..Task::default()
        }
    }

    /// A task of `task_type` whose payload is `value` serialised as JSON.
    ///
    /// ```
    /// let task = sentinel_sdk::Task::with_json("sha256", &serde_json::json!({"data": "abc"}));
    /// assert_eq!(task.payload, br#"{"data":"abc"}"#);
    /// ```
    pub fn with_json<T: Serialize + ?Sized>(task_type: impl Into<String>, value: &T) -> Self {
        let payload = serde_json::to_vec(value).expect("value serialises to JSON");
        Task::new(task_type, payload)
    }

    /// Builder: the same task with `priority`.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Builder: the same task with `id`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Decodes the payload as JSON into `T`.
    ///
    /// A payload that does not decode gives a non-retryable [`TaskError`] whose
    /// message names the task type and the serde error (which says which field and
    /// where), so `?` is all an executor needs.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Sleep { ms: u64 }
    ///
    /// let task = sentinel_sdk::Task::new("sleep", br#"{"ms": 5}"#.to_vec());
    /// assert_eq!(task.json::<Sleep>().unwrap().ms, 5);
    ///
    /// let bad = sentinel_sdk::Task::new("sleep", br#"{"ms": "soon"}"#.to_vec());
    /// let err = bad.json::<Sleep>().err().unwrap();
    /// assert!(!err.retryable);
    /// assert!(err.message.starts_with("invalid payload for task type `sleep`"));
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, TaskError> {
        serde_json::from_slice(&self.payload).map_err(|e| {
            TaskError::fatal(format!(
                "invalid payload for task type `{}`: {e}",
                self.task_type
            ))
        })
    }

    /// The payload as UTF-8 text; a non-retryable [`TaskError`] if it is not.
    pub fn text(&self) -> Result<&str, TaskError> {
        std::str::from_utf8(&self.payload).map_err(|e| {
            TaskError::fatal(format!(
                "payload for task type `{}` is not UTF-8: {e}",
                self.task_type
            ))
        })
    }

    /// The first metadata value for `key`, if any.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What an executor returns: opaque bytes, JSON by convention.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Output(Vec<u8>);

impl Output {
    /// `value` serialised as JSON. Returns a `Result` so it can be the last
    /// expression of `Executor::run` directly:
    ///
    /// ```
    /// use sentinel_sdk::{Output, TaskError};
    /// fn run() -> Result<Output, TaskError> {
    ///     Output::json(&serde_json::json!({"ok": true}))
    /// }
    /// assert_eq!(run().unwrap().as_bytes(), br#"{"ok":true}"#);
    /// ```
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Output, TaskError> {
        serde_json::to_vec(value)
            .map(Output)
            .map_err(|e| TaskError::fatal(format!("cannot serialise the output as JSON: {e}")))
    }

    /// Raw bytes, returned as they are.
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Output {
        Output(bytes.into())
    }

    /// UTF-8 text, returned as its bytes.
    pub fn text(text: impl Into<String>) -> Output {
        Output(text.into().into_bytes())
    }

    /// The output bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The output bytes, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Decodes the output as JSON (handy in tests).
    pub fn to_json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.0)
    }
}

impl From<Vec<u8>> for Output {
    fn from(bytes: Vec<u8>) -> Self {
        Output(bytes)
    }
}

impl From<String> for Output {
    fn from(text: String) -> Self {
        Output(text.into_bytes())
    }
}

impl From<&str> for Output {
    fn from(text: &str) -> Self {
        Output(text.as_bytes().to_vec())
    }
}

/// Why a task failed, and whether running it again could help.
///
/// * [`TaskError::retryable`]: a transient failure (a busy dependency, a timeout of
///   something the plugin called); the host may run the task again.
/// * [`TaskError::fatal`]: running it again cannot help (an invalid payload, a
///   missing capability); the task fails for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    /// Human-readable reason, shown to the submitter.
    pub message: String,
    /// Whether running the task again could succeed.
    pub retryable: bool,
}

impl TaskError {
    /// A transient failure: the host may retry the task.
    pub fn retryable(message: impl Into<String>) -> Self {
        TaskError {
            message: message.into(),
            retryable: true,
        }
    }

    /// A permanent failure: retrying cannot help.
    pub fn fatal(message: impl Into<String>) -> Self {
        TaskError {
            message: message.into(),
            retryable: false,
        }
    }

    /// An invalid payload (permanent): `invalid payload: {message}`.
    pub fn invalid_payload(message: impl fmt::Display) -> Self {
        TaskError::fatal(format!("invalid payload: {message}"))
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.retryable { "retryable" } else { "fatal" };
        write!(f, "{} ({kind})", self.message)
    }
}

impl std::error::Error for TaskError {}

impl From<serde_json::Error> for TaskError {
    /// JSON errors are permanent: the same bytes fail the same way again.
    fn from(e: serde_json::Error) -> Self {
        TaskError::fatal(format!("JSON error: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct P {
        data: String,
    }

    #[test]
    fn json_payload_and_errors() {
        let t = Task::new("sha256", br#"{"data":"x"}"#.to_vec());
        assert_eq!(t.json::<P>().unwrap().data, "x");
        let e = Task::new("sha256", b"[]".to_vec()).json::<P>().unwrap_err();
        assert!(!e.retryable);
        assert!(e.message.contains("sha256"), "{}", e.message);
    }

    #[test]
    fn output_and_errors() {
        assert_eq!(Output::json(&[1, 2]).unwrap().as_bytes(), b"[1,2]");
        assert_eq!(Output::from("hi").into_bytes(), b"hi");
        assert!(TaskError::retryable("x").retryable);
        assert!(!TaskError::fatal("x").retryable);
        assert_eq!(TaskError::fatal("boom").to_string(), "boom (fatal)");
    }

    #[test]
    fn meta_lookup() {
        let mut t = Task::new("a", Vec::new());
        t.metadata.push(("k".into(), "v".into()));
        assert_eq!(t.meta("k"), Some("v"));
        assert_eq!(t.meta("z"), None);
    }
}
