//! The HTTP API (JSON), thin over the node's managers.
//!
//! Handlers validate, resolve the caller's tenant and call one manager each; they hold no
//! state of their own. Every error is a JSON body `{"error": {"code", "message"}}` with a 4xx
//! for the caller's mistakes and 503 when the store is unreachable; nothing is stored on error.

pub mod auth;
mod cluster;
mod error;
pub mod extract;
mod hygiene;
mod memory;
mod page;
mod tasks;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;

pub use error::ApiError;

use crate::node::NodeState;

/// The routes of a host, each in its access group (see [`auth`]), with the hygiene layers: our
/// URI and header limits (414/431 in JSON), every framework error rewritten into the JSON
/// shape, and panics caught into a JSON 500.
///
/// Open: `/health` (and `/metrics` with `auth.metrics = "open"`). Tenant: the caller's own
/// tasks, results, DLQ, memory, locks and the plugins it may run. Admin: the fleet (workers,
/// load, cluster health, metrics) and cluster changes (strategy, rebalance, placement).
pub fn router(state: Arc<NodeState>) -> Router {
    use auth::Access;
    let http = state.settings.http.clone();
    let gate = |access| axum::middleware::from_fn_with_state((state.clone(), access), auth::gate);
    let mut open = Router::new().route("/health", get(cluster::health));
    let mut admin = Router::new()
        .route("/cluster/health", get(cluster::cluster_health))
        .route("/v1/workers", get(cluster::workers))
        .route("/v1/workers/{id}", get(cluster::worker))
        .route("/v1/cluster/load", get(cluster::load))
        .route("/v1/cluster/rebalance", post(cluster::rebalance))
        .route("/v1/cluster/select-worker", post(cluster::select_worker))
        .route(
            "/v1/cluster/strategy",
            axum::routing::put(cluster::set_strategy),
        );
    if state.settings.tenancy.metrics_open {
        open = open.route("/metrics", get(cluster::metrics));
    } else {
        admin = admin.route("/metrics", get(cluster::metrics));
    }
    let tenant = Router::new()
        .route("/v1/whoami", get(cluster::whoami))
        .route("/v1/tasks", post(tasks::submit).get(tasks::list))
        .route("/v1/tasks/{id}", get(tasks::get))
        .route("/v1/tasks/{id}/cancel", post(tasks::cancel))
        .route("/v1/dlq", get(tasks::dead_letters))
        .route("/v1/dlq/{id}/retry", post(tasks::retry_dead))
        .route("/v1/locks", get(cluster::locks))
        .route("/v1/plugins", get(cluster::plugins))
        .route("/v1/memory/{namespace}", get(memory::list))
        .route(
            "/v1/memory/{namespace}/{key}",
            get(memory::get).put(memory::set).delete(memory::delete),
        )
        .route_layer(gate(Access::Tenant));
    let admin = admin.route_layer(gate(Access::Admin));
    let routes = open.merge(tenant).merge(admin).with_state(state);
    harden(routes, http)
}

/// Wraps `routes` in the hygiene layers (public so that tests can harden a route of their own,
/// e.g. one that panics): 404/405 in JSON, our URI and header limits (414/431), any error the
/// framework answered by itself rewritten into the JSON shape, and panics caught into a JSON 500.
pub fn harden(routes: Router, http: crate::config::HttpSettings) -> Router {
    routes
        .fallback(hygiene::no_route)
        .method_not_allowed_fallback(hygiene::wrong_method)
        .layer(axum::middleware::from_fn(hygiene::json_errors))
        .layer(axum::middleware::from_fn_with_state(
            http,
            hygiene::request_limits,
        ))
        .layer(CatchPanicLayer::custom(hygiene::panic_response))
}

/// Parses a JSON request body into `T`, whatever its content type: a malformed body is a 400
/// with our error shape, never the framework's plain-text rejection; a wrong field is named.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    from_value(parse_value(body)?, "", "INVALID_REQUEST")
}

/// A request body as a JSON value (400 `MALFORMED_JSON` when it is not JSON).
pub(crate) fn parse_value(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "MALFORMED_JSON",
            format!("request body is not valid JSON: {e}"),
        )
    })
}

/// `value` as a `T`; an error names the field's path, after `prefix` (e.g. `tasks[3]`).
pub(crate) fn from_value<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    prefix: &str,
    code: &'static str,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let at = match (prefix.is_empty(), path.as_str()) {
            (true, ".") => "body".to_string(),
            (true, _) => path,
            (false, ".") => prefix.to_string(),
            (false, p) if p.starts_with('[') => format!("{prefix}{p}"),
            (false, p) => format!("{prefix}.{p}"),
        };
        ApiError::bad_request(code, format!("{at}: {}", e.into_inner()))
    })
}

/// `Range::check` as a 400 `OUT_OF_RANGE` naming the field (after `prefix`) and the range.
pub(crate) fn in_range(
    range: &sentinel_coord::model::limits::Range,
    value: i128,
    prefix: &str,
) -> Result<(), ApiError> {
    range.check(value).map_err(|e| {
        let at = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}.")
        };
        ApiError::bad_request("OUT_OF_RANGE", format!("{at}{e}"))
    })
}

/// A string field's length: 400 `INVALID_FIELD` naming it when empty or longer than `max` bytes.
pub(crate) fn name_len(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > max {
        return Err(ApiError::bad_request(
            "INVALID_FIELD",
            format!(
                "{field}: must be 1 to {max} bytes, got {} bytes",
                value.len()
            ),
        ));
    }
    Ok(())
}

/// Any JSON integer, kept wide so that an out-of-range value is reported with its range rather
/// than as a type error; anything else is "expected an integer".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Int(pub i128);

impl<'de> serde::Deserialize<'de> for Int {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Int, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Int;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Int, E> {
                Ok(Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Int, E> {
                Ok(Int(v.into()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Int, E> {
                Ok(Int(v))
            }
            fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Int, E> {
                Ok(Int(i128::try_from(v).unwrap_or(i128::MAX)))
            }
        }
        d.deserialize_any(V)
    }
}

/// Milliseconds since the epoch as RFC 3339.
pub(crate) fn iso(ms: i64) -> String {
    // Clamped to the documented timestamp range: a record written before ranges were
    // enforced must not make a read panic (SystemTime and RFC 3339 both stop short of i64).
    let ms = ms.clamp(0, sentinel_coord::model::limits::TIMESTAMP_MS.max);
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod iso_tests {
    #[test]
    fn any_stored_time_formats_without_panicking() {
        assert_eq!(super::iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::iso(-5), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::iso(i64::MAX), "9999-12-31T23:59:59.999Z");
    }
}
