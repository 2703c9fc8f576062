//! `echo`: returns its payload unchanged (task type `echo`).
//!
//! The smallest possible executor; the payload does not have to be JSON.

use sentinel_sdk::{Executor, Output, Task, TaskError};

/// The `echo` executor.
pub struct Echo;

impl Executor for Echo {
    fn run(task: Task) -> Result<Output, TaskError> {
        Ok(Output::bytes(task.payload))
    }
}

sentinel_sdk::export_executor!(Echo);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_payload_unchanged() {
        let payload = b"{\"any\": [1, 2, 3]}\xff".to_vec();
        let out = Echo::run(Task::new("echo", payload.clone())).unwrap();
        assert_eq!(out.into_bytes(), payload);
    }
}
