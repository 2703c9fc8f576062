//! Fair claims between tenants: start-time fair queuing by weight, as the contract describes
//! (`QueueStore::claim`). Each tenant has a virtual time; a claim batch repeatedly takes, among
//! the tenants that still have a claimable task for the request (and are under `max_running`),
//! the one with the lowest virtual time (ties: tenant name), and its best task (priority, then
//! submission order: unchanged *within* a tenant). Each task taken advances the tenant by
//! `vtime_step(weight)`; the store's virtual clock is the largest virtual time a task was taken
//! at. A tenant that becomes backlogged is raised to the lowest virtual time of the other
//! backlogged tenants (or the clock), so idleness banks no credit.
//!
//! Persistence costs nothing extra: the virtual times live on the task records the events
//! concern (`vt`, `vt_at`, see `record.rs`), which the claim or enqueue writes anyway. A
//! tenant's virtual time is the largest `vt` of its records and the clock the largest `vt_at`
//! of all (both only grow), derived when the snapshot is loaded. So a claim or a submission of
//! a tenant without settings costs exactly the requests it cost before tenancy: no extra file
//! in the commit, no extra blob for the next reader.
//!
//! Cost: the snapshot is in memory already (the GitHub store reads the whole document); a claim
//! looks at each claimable record once, keeps each tenant's best `limit` (a selection, not a
//! sort of the backlog), then picks `limit` times among the active tenants.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use sentinel_coord::model::*;

use super::logic::QueueState;

/// A tenant's claimable tasks, best last (so `pop` takes the best).
type Candidates = Vec<(Reverse<i32>, u64, TaskKey)>;

impl QueueState {
    /// A tenant's virtual time; one that never had any starts at the store's clock.
    pub(super) fn vt_of(&self, tenant: &str) -> i64 {
        self.vt.get(tenant).copied().unwrap_or(self.vclock)
    }

    fn weight(&self, tenant: &str) -> u32 {
        self.settings(tenant).map_or(1, |s| s.weight)
    }

    /// Raises the tenant of `k` (which `k`, a queued task, has just made backlogged) to at least
    /// the lowest virtual time of the other tenants backlogged before, or the store's clock if
    /// there are none. The raise is stamped on `k`'s record.
    pub(super) fn raise_on_backlog(&mut self, k: &TaskKey, backlogged: &BTreeMap<String, u64>) {
        let target = backlogged
            .keys()
            .filter(|t| **t != k.tenant)
            // Just below: the newcomer wins the tie once, whatever the names.
            .map(|t| self.vt_of(t).saturating_sub(1))
            .min()
            .unwrap_or(self.vclock);
        if self.vt.get(&k.tenant).is_some_and(|&v| v >= target) {
            return;
        }
        self.vt.insert(k.tenant.clone(), target);
        if let Some(r) = self.touch(k) {
            r.vt = Some(target);
        }
    }

    pub fn claim(&mut self, now: i64, req: &ClaimRequest) -> Vec<Task> {
        let limit = req.limit as usize;
        if limit == 0 {
            return Vec::new();
        }
        let mut cands: BTreeMap<String, Candidates> = BTreeMap::new();
        for r in self.tasks.values() {
            if self.claimable(r, now, req) {
                cands.entry(r.tenant.clone()).or_default().push((
                    Reverse(r.priority),
                    r.seq,
                    r.key(),
                ));
            }
        }
        for c in cands.values_mut() {
            if c.len() > limit {
                c.select_nth_unstable(limit - 1);
                c.truncate(limit);
            }
            c.sort_unstable_by(|a, b| b.cmp(a));
        }
        let capped: Vec<&str> = cands
            .keys()
            .map(String::as_str)
            .filter(|t| {
                self.settings(t)
                    .is_some_and(|s| s.quota.max_running.is_some())
            })
            .collect();
        let mut running = self.running(&capped);
        let cap = |st: &QueueState, t: &str| st.settings(t).and_then(|s| s.quota.max_running);
        let mut out = Vec::with_capacity(limit.min(64));
        while out.len() < limit {
            let pick = cands
                .iter()
                .filter(|(t, c)| {
                    !c.is_empty()
                        && cap(self, t)
                            .is_none_or(|max| running.get(*t).copied().unwrap_or(0) < max)
                })
                .map(|(t, _)| (self.vt_of(t), t.clone()))
                .min();
            let Some((at, tenant)) = pick else { break };
            let (_, _, k) = cands
                .get_mut(&tenant)
                .and_then(Vec::pop)
                .expect("picked a tenant with candidates");
            let after = at.saturating_add(vtime_step(self.weight(&tenant)));
            if let Some(n) = running.get_mut(&tenant) {
                *n += 1;
            }
            let task = self.lease(now, &k, req);
            let r = self.touch(&k).expect("just leased");
            r.vt = Some(after);
            r.vt_at = Some(at);
            self.vt.insert(tenant, after);
            self.vclock = self.vclock.max(at);
            out.push(task);
        }
        out
    }
}
