//! Sentinel's GitHub store: the seeds' "GitHub as the coordination layer", made race-free.
//!
//! [`GithubStore`] implements [`sentinel_coord::Store`] on one GitHub repository through
//! octocrab, and passes the whole conformance suite (against the REST emulator in
//! `tests/emulator/`). Construct it with [`GithubStore::open_url`] for `github://OWNER/REPO`
//! (token from `GITHUB_TOKEN`, API base from `GITHUB_API_URL` or api.github.com) or with
//! [`GithubStore::connect`] and a [`GithubConfig`].
//!
//! # Design
//!
//! GitHub offers exactly one atomic conditional write: moving a git ref, either by creating it
//! (`POST /git/refs`: the second creator gets 422 "Reference already exists") or by a
//! fast-forward-only update (`PATCH /git/refs/{ref}` with `force: false`: refused with 422 unless
//! the new commit descends from the ref's current commit). That is a compare-and-swap on the
//! ref's commit. Everything that needs atomicity rests on it (see `PROTOCOL.md` for the full
//! protocol and its failure cases):
//!
//! * **Locks** ([`locks`]): one ref per key, `refs/sentinel/locks/<tenant>/<key>`; each state
//!   (held, renewed, released) is a commit whose message is the seed's `DISTRIBUTED_LOCK` record
//!   and whose parent is the previous state. Acquiring over a free or expired state is a CAS from
//!   that state, so an expired lock is taken over by at most one acquirer. Fencing tokens come
//!   from a counter ref advanced by the same CAS, and a grant's token must exceed its
//!   predecessor's: tokens strictly increase per key and never repeat across keys.
//! * **Documents** ([`doc`]): the queue, the registry and memory are each a ref whose tree holds
//!   JSON files; a change is an optimistic transaction (read, compute, commit, CAS, recompute on
//!   a lost race), i.e. serialisable.
//! * **Tasks are issues** ([`issues`]): the authoritative task record (state, fence, lease) is a
//!   file in the queue document, because issues cannot be updated conditionally; each task also
//!   has an issue, labelled `sentinel`, `type:<t>`, `priority:<n>`, `state:<s>`, `tenant:<t>`,
//!   with the payload in a fenced JSON block, the result or error as a comment, closed on
//!   completion. People submit tasks by opening an issue from `templates/sentinel-task.yml`;
//!   only authors admitted by the [`SubmitterPolicy`] ([`submitters`]: by default the
//!   repository's owner, members and collaborators) are imported, others' issues are closed
//!   with a comment and nothing runs.
//! * **Claims** are queue transactions: two workers can never both run a task with a valid fence.
//! * **Tenants** ([`tenants`], `queue/quota.rs`, `queue/fair.rs`): a task's identity is
//!   `(tenant, id)` (record `tasks/<tenant>/<id>.json`; stores of the older layout still open).
//!   Settings live in the queue document; quotas are judged in the transaction of the write they
//!   limit, so hosts sharing a repository can never together exceed one; claims are fair between
//!   tenants by weight, with the virtual times kept on the task records the claims write anyway:
//!   a tenant without a quota pays no extra request.
//! * **Registry and memory** records are files in their documents, in seed 001's shapes.
//! * **Rate limits** ([`api`], [`budget`]): conditional GETs with ETags, immutable git objects
//!   cached by SHA, `x-ratelimit-*` tracked, `retry-after`/secondary-limit 403 and 429 answered by
//!   pausing the whole store and retrying; [`budget::plan_intervals`] derives poll and heartbeat
//!   intervals from the budget and warns when the fleet cannot fit.
//! * **Time** is always the injected [`sentinel_coord::Clock`].
//!
//! # What GitHub cannot do, and what this crate does instead
//!
//! * **Millisecond wake-ups.** There is no push channel; other processes' changes are noticed by
//!   polling refs with ETags every poll interval (seconds). In-process changes wake at once.
//! * **Throughput.** Every transaction is 3 writes, and GitHub budgets about 500 content-creating
//!   requests an hour per token; README.md has the arithmetic (tens of tasks an hour per token,
//!   not thousands). Batching claims and settlements is what helps most.
//! * **Cross-document atomicity.** Worker stats are updated in a registry transaction after the
//!   settlement commits; a crash in between loses the stat, never the settlement.
//! * **Issue labels** lag the queue record (best-effort mirror, possibly reordered between
//!   workers); the record is the authority.

pub mod api;
pub mod budget;
pub mod codec;
pub mod doc;
pub mod git;
pub mod issues;
pub mod locks;
pub mod memory;
pub mod notify;
pub mod queue;
pub mod registry;
pub mod store;
pub mod submitters;
pub mod tenants;

pub use api::RetryConfig;
pub use budget::{FleetPlan, Intervals, Limits, RateSnapshot, plan_and_warn, plan_intervals};
pub use store::{GithubConfig, GithubStore};
pub use submitters::SubmitterPolicy;
