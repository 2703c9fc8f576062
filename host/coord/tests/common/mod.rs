//! Helpers shared by the coordination tests.

use sentinel_coord::model::{CapacityUpdate, WorkerStatus};
use sentinel_coord::registry::WorkerRegistry;

/// Sets a registered worker's status and number of running tasks.
pub async fn set_load(
    r: &WorkerRegistry,
    worker_id: &str,
    status: WorkerStatus,
    active_tasks: u32,
) {
    let update = CapacityUpdate {
        active_tasks: Some(active_tasks),
        ..Default::default()
    };
    r.update_status(worker_id, status, Some(update))
        .await
        .unwrap();
}
