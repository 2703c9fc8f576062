//! `sentinel:plugin/progress`: progress reports, which double as the task's heartbeat.

use crate::bindings::executor::sentinel::plugin::progress::Host;
use crate::host::logging::truncate;
use crate::state::SandboxState;

impl Host for SandboxState {
    async fn report(&mut self, percent: u8, message: String) -> wasmtime::Result<()> {
        if let Some((sink, tenant, task_id)) = &self.progress {
            sink.report(tenant, task_id, percent.min(100), truncate(&message, 1024));
        }
        Ok(())
    }
}

impl crate::bindings::executor::sentinel::plugin::types::Host for SandboxState {}
