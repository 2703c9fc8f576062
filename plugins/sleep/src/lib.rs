//! `sleep`: sleeps, reporting progress (task type `sleep`).
//!
//! Payload `{"ms": N}`; after sleeping N milliseconds the output is `{"slept_ms": N}`.
//! It sleeps in steps of a tenth of N, at most 100 ms and at least 1 ms, and reports
//! progress after every step (so at least every 100 ms), from 0 % to 100 %.
//! `std::thread::sleep` on `wasm32-wasip2` is a `wasi:clocks` poll, which yields to the
//! host's async runtime: a sleeping task costs no CPU.
//!
//! Any other payload is a non-retryable error.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use sentinel_sdk::{Executor, Output, Task, TaskError, progress};

#[derive(Deserialize)]
struct Input {
    ms: u64,
}

#[derive(Serialize)]
struct Slept {
    slept_ms: u64,
}

/// The length of one sleep step for a sleep of `total_ms`: a tenth, clamped to 1..=100 ms.
pub fn step_ms(total_ms: u64) -> u64 {
    (total_ms / 10).clamp(1, 100)
}

/// The `sleep` executor.
pub struct Sleep;

impl Executor for Sleep {
    fn run(task: Task) -> Result<Output, TaskError> {
        let Input { ms } = task.json()?;
        progress(0, &format!("sleeping {ms} ms"));
        let start = Instant::now();
        let total = Duration::from_millis(ms);
        let step = Duration::from_millis(step_ms(ms));
        loop {
            let elapsed = start.elapsed();
            if elapsed >= total {
                break;
            }
            std::thread::sleep(step.min(total - elapsed));
            let done = start.elapsed().min(total);
            let percent = (done.as_millis() * 100 / total.as_millis().max(1)) as u8;
            progress(percent, &format!("slept {} of {ms} ms", done.as_millis()));
        }
        progress(100, "done");
        Output::json(&Slept { slept_ms: ms })
    }
}

sentinel_sdk::export_executor!(Sleep);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps() {
        assert_eq!(step_ms(0), 1);
        assert_eq!(step_ms(50), 5);
        assert_eq!(step_ms(1000), 100);
        assert_eq!(step_ms(60_000), 100);
    }
}
