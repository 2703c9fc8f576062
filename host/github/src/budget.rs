//! Rate-limit bookkeeping and planning. [`RateState`] remembers what GitHub last said about the
//! token's budget (`x-ratelimit-*`) and any pause a rate-limit answer imposed; [`plan_intervals`]
//! derives poll and heartbeat intervals for a fleet from GitHub's published limits and warns
//! (`tracing::warn`) when the fleet cannot fit. This module does no I/O and decides no retries;
//! [`crate::api`] feeds it and obeys it.
//!
//! Limits per token (GitHub REST documentation): 5000 requests an hour (primary; a 304 answer to
//! a conditional request does not count); at most 80 content-creating requests a minute and 500
//! an hour (secondary). GitHub does not list which endpoints "create content"; issues and comments
//! surely do. We budget **every write** (POST/PATCH/PUT/DELETE, git objects and refs included) as
//! content-creating, the safe reading; [`Limits::writes_per_hour`] can be raised by an operator
//! who has measured otherwise.

use std::sync::Mutex;
use std::time::Duration;

use http::HeaderMap;
use sentinel_coord::Clock;

/// What one token may do (GitHub's documented defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub requests_per_hour: u32,
    pub writes_per_hour: u32,
    pub writes_per_minute: u32,
    /// Secondary limit on REST "points" a minute (a GET costs 1, a write 5).
    pub points_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            requests_per_hour: 5000,
            writes_per_hour: 500,
            writes_per_minute: 80,
            points_per_minute: 900,
        }
    }
}

/// What a fleet sharing one token wants to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FleetPlan {
    pub workers: u32,
    /// Tasks the fleet should be able to run in an hour.
    pub tasks_per_hour: u32,
    /// Whether tasks are mirrored to issues (labels, result comment, close).
    pub issues: bool,
    /// Tasks claimed per claim transaction on average (batching amortises the commit).
    pub claim_batch: u32,
}

/// Requests one operation costs. A transaction on a coordination ref is a tree, a commit and a
/// ref update (3 writes) plus reads that are mostly 304s or immutable-object cache hits.
pub mod cost {
    pub const TXN_WRITES: u32 = 3;
    pub const TXN_READS: u32 = 3;
    /// Heartbeat: one registry transaction plus one lease-extension transaction.
    pub const HEARTBEAT_WRITES: u32 = 2 * TXN_WRITES;
    /// Issue mirror per task: create, label on claim, result comment, close.
    pub const ISSUE_WRITES_PER_TASK: u32 = 4;
    /// A task's own transactions: its enqueue, its settlement, the worker-stats update.
    pub const TASK_WRITES: u32 = 3 * TXN_WRITES;
    /// Polling the queue and memory refs and the submissions list with ETags: answers are 304
    /// unless something changed.
    pub const POLL_REQUESTS: u32 = 3;
}

/// Intervals a fleet should use, and whether it fits the budget at all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Intervals {
    pub poll: Duration,
    pub heartbeat: Duration,
    /// Writes per hour the plan consumes at these intervals.
    pub writes_per_hour: u32,
    /// Requests per hour (counted ones) at these intervals.
    pub requests_per_hour: u32,
    pub fits: bool,
}

/// Derives intervals for `plan` under `limits`. Task traffic is budgeted first (it is the work);
/// heartbeats get what is left of 80% of the write budget (20% is headroom for retries, recovery
/// and people using the same token), never more often than every 30 s and never less often than
/// every 10 minutes (beyond that, dead-worker detection becomes useless and the plan is reported
/// as not fitting). Polling is free when nothing changed (304), so the poll interval is bounded by
/// the secondary points limit only, never below one second.
pub fn plan_intervals(plan: &FleetPlan, limits: &Limits) -> Intervals {
    let workers = plan.workers.max(1);
    let per_task = cost::TASK_WRITES
        + cost::TXN_WRITES / plan.claim_batch.max(1)
        + if plan.issues {
            cost::ISSUE_WRITES_PER_TASK
        } else {
            0
        };
    let task_writes = plan.tasks_per_hour.saturating_mul(per_task);
    let usable = limits.writes_per_hour * 8 / 10;
    let left = usable.saturating_sub(task_writes);
    let min_hb = Duration::from_secs(30);
    let max_hb = Duration::from_secs(600);
    let hb_per_hour_wanted = workers * cost::HEARTBEAT_WRITES;
    let heartbeat = if left == 0 {
        max_hb
    } else {
        // Each worker heartbeats 3600/h times an hour: workers * 3600/h * writes <= left.
        let secs = (3600u64 * hb_per_hour_wanted as u64).div_ceil(left as u64);
        Duration::from_secs(secs).clamp(min_hb, max_hb)
    };
    let hb_writes = (3600 / heartbeat.as_secs().max(1)) as u32 * hb_per_hour_wanted;
    let writes = task_writes + hb_writes;
    // Half of the points budget for polls, the rest for the work itself.
    let poll_points_per_min = (limits.points_per_minute / 2).max(1);
    let poll_secs = (60 * workers * cost::POLL_REQUESTS).div_ceil(poll_points_per_min);
    let poll = Duration::from_secs(poll_secs.max(1) as u64);
    let requests = writes
        + plan.tasks_per_hour * cost::TXN_READS * 2
        + (3600 / heartbeat.as_secs().max(1)) as u32 * workers * cost::TXN_READS;
    let per_minute_peak = writes.div_ceil(60).max(plan.claim_batch.min(workers));
    let fits = writes <= usable
        && requests <= limits.requests_per_hour
        && per_minute_peak <= limits.writes_per_minute;
    Intervals {
        poll,
        heartbeat,
        writes_per_hour: writes,
        requests_per_hour: requests,
        fits,
    }
}

/// [`plan_intervals`] plus a warning when the fleet does not fit.
pub fn plan_and_warn(plan: &FleetPlan, limits: &Limits) -> Intervals {
    let i = plan_intervals(plan, limits);
    if !i.fits {
        tracing::warn!(
            workers = plan.workers,
            tasks_per_hour = plan.tasks_per_hour,
            issues = plan.issues,
            writes_per_hour = i.writes_per_hour,
            write_budget = limits.writes_per_hour,
            requests_per_hour = i.requests_per_hour,
            request_budget = limits.requests_per_hour,
            heartbeat_s = i.heartbeat.as_secs(),
            "this fleet does not fit one GitHub token's rate limits: expect rate-limit pauses; \
             use fewer workers, fewer tasks, longer heartbeats, no issue mirror, or more tokens"
        );
    }
    i
}

/// The token's budget as GitHub last reported it, and any pause in force.
#[derive(Debug, Default)]
pub struct RateState {
    inner: Mutex<RateInner>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RateSnapshot {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    pub used: Option<u64>,
    /// Epoch seconds when the window resets.
    pub reset: Option<u64>,
    /// Store-clock ms until which requests are paused (rate-limit answer).
    pub paused_until_ms: Option<i64>,
    /// How many rate-limit answers this store has received.
    pub limited_answers: u64,
}

#[derive(Debug, Default)]
struct RateInner {
    snap: RateSnapshot,
    /// Tokio instant matching `paused_until_ms`: waiting uses the timer, not the clock, so a
    /// manual test clock cannot stall requests forever.
    paused_until: Option<tokio::time::Instant>,
}

impl RateState {
    pub fn snapshot(&self) -> RateSnapshot {
        self.inner.lock().unwrap().snap
    }

    pub(crate) fn observe(&self, headers: &HeaderMap, _clock: &dyn Clock) {
        let get = |n: &str| headers.get(n)?.to_str().ok()?.trim().parse::<u64>().ok();
        let mut g = self.inner.lock().unwrap();
        if let Some(v) = get("x-ratelimit-limit") {
            g.snap.limit = Some(v);
        }
        if let Some(v) = get("x-ratelimit-remaining") {
            g.snap.remaining = Some(v);
        }
        if let Some(v) = get("x-ratelimit-used") {
            g.snap.used = Some(v);
        }
        if let Some(v) = get("x-ratelimit-reset") {
            g.snap.reset = Some(v);
        }
    }

    pub(crate) fn pause_for(&self, wait: Duration, clock: &dyn Clock) {
        let mut g = self.inner.lock().unwrap();
        let until = tokio::time::Instant::now() + wait;
        if g.paused_until.is_none_or(|p| p < until) {
            g.paused_until = Some(until);
            g.snap.paused_until_ms = Some(clock.now_ms() + wait.as_millis() as i64);
        }
        g.snap.limited_answers += 1;
    }

    /// Sleeps while a pause is in force (shared by every request of the store).
    pub(crate) async fn wait_until_allowed(&self, _clock: &dyn Clock) {
        loop {
            let until = self.inner.lock().unwrap().paused_until;
            match until {
                Some(u) if u > tokio::time::Instant::now() => tokio::time::sleep_until(u).await,
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_worker_without_issues_fits() {
        let plan = FleetPlan {
            workers: 1,
            tasks_per_hour: 30,
            issues: false,
            claim_batch: 1,
        };
        let i = plan_intervals(&plan, &Limits::default());
        assert!(i.fits, "{i:?}");
        assert!(i.heartbeat >= Duration::from_secs(30));
    }

    #[test]
    fn a_big_fleet_does_not_fit_and_gets_the_longest_heartbeat() {
        let plan = FleetPlan {
            workers: 50,
            tasks_per_hour: 1000,
            issues: true,
            claim_batch: 1,
        };
        let i = plan_intervals(&plan, &Limits::default());
        assert!(!i.fits);
        assert_eq!(i.heartbeat, Duration::from_secs(600));
    }

    #[test]
    fn heartbeats_slow_down_as_the_fleet_grows() {
        let at = |workers| {
            plan_intervals(
                &FleetPlan {
                    workers,
                    tasks_per_hour: 10,
                    issues: true,
                    claim_batch: 1,
                },
                &Limits::default(),
            )
            .heartbeat
        };
        assert!(
            at(1) <= at(3) && at(3) <= at(6),
            "{:?} {:?} {:?}",
            at(1),
            at(3),
            at(6)
        );
    }
}
