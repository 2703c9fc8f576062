//! The audit trail: every admin action and every refused access (bad or missing token, wrong
//! tenant, missing role, quota) is one structured log event (target `sentinel::audit`) with
//! principal, action and outcome, and a count in `sentinel_audit_events_total{kind, reason}`.
//!
//! Never logs a token, a payload or a value: only who, what (method and route template) and why.

use crate::metrics::Metrics;

/// Why an access was refused, as a stable label.
pub fn refusal_reason(code: &str) -> &'static str {
    match code {
        "MISSING_TOKEN" => "missing_token",
        "BAD_TOKEN" => "bad_token",
        "WRONG_TENANT" => "wrong_tenant",
        "ADMIN_ONLY" => "admin_only",
        "QUOTA_EXCEEDED" => "quota",
        _ => "other",
    }
}

/// A refused request.
pub fn refused(
    metrics: &Metrics,
    principal: &str,
    tenant: &str,
    action: &str,
    status: u16,
    code: &str,
) {
    let reason = refusal_reason(code);
    metrics
        .audit_events
        .with_label_values(&["refused", reason])
        .inc();
    tracing::warn!(
        target: "sentinel::audit",
        principal,
        tenant,
        action,
        outcome = "refused",
        status,
        code,
        reason,
        "access refused"
    );
}

/// An admin's action (and its outcome: the HTTP status).
pub fn admin_action(metrics: &Metrics, principal: &str, tenant: &str, action: &str, status: u16) {
    let outcome = if status < 400 { "ok" } else { "failed" };
    metrics
        .audit_events
        .with_label_values(&["admin", outcome])
        .inc();
    tracing::info!(
        target: "sentinel::audit",
        principal,
        tenant,
        action,
        outcome,
        status,
        "admin action"
    );
}
