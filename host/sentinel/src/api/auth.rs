//! Who is calling and whether they may: every route belongs to one access group (open, tenant,
//! admin) declared in [`super::router`], and the group's gate resolves the bearer token to a
//! principal and the acting tenant before the handler runs. Handlers read the [`Caller`] from
//! the request's extensions; none of them looks at tokens.
//!
//! A tenant acts only on its own tenant; an admin acts on its home tenant, or on another it
//! names with `X-Sentinel-Tenant`, and (naming none) sees listings across tenants. Every refusal
//! and every admin action is audited ([`crate::tenancy::audit`]).

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::node::NodeState;
use crate::tenancy::{Principal, audit};

/// The header an admin names a tenant with.
pub const TENANT_HEADER: &str = "x-sentinel-tenant";

/// What a gated route requires (open routes, such as `/health`, have no gate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A valid token; the caller acts on its tenant.
    Tenant,
    /// A valid admin token.
    Admin,
}

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// The tenant this request acts on.
    pub tenant: String,
    /// An admin that named no tenant: listings span every tenant.
    pub all_tenants: bool,
}

impl Caller {
    /// The tenant filter of a listing: `None` (all) for an admin that named no tenant.
    pub fn listing_tenant(&self) -> Option<String> {
        (!self.all_tenants).then(|| self.tenant.clone())
    }
}

/// The code of an error answer, kept on the response so that the gate can audit refusals.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// The gate of one access group. Audit details (who, what) are formatted only when an event is
/// written: the common request pays for one `Arc` and nothing else.
pub async fn gate(
    State((state, access)): State<(Arc<NodeState>, Access)>,
    mut req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let action = || {
        let path = matched.as_ref().map_or("?", |m| m.as_str());
        format!("{method} {path}")
    };
    let caller = match resolve(&state, req.headers(), access) {
        Ok(caller) => Arc::new(caller),
        Err((who, e)) => {
            audit::refused(
                &state.metrics,
                &who,
                "",
                &action(),
                e.status.as_u16(),
                e.code,
            );
            let mut response = e.into_response();
            if response.status() == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"sentinel\""),
                );
            }
            return response;
        }
    };
    let is_write = !matches!(method, Method::GET | Method::HEAD);
    // An admin action: a change on an admin endpoint (also on a dev host), or, with
    // authentication on, any write by an admin and any request on another tenant's behalf.
    let auth_on = state.settings.tenancy.auth_enabled();
    let audited_admin = caller.principal.is_admin()
        && ((is_write && (access == Access::Admin || auth_on))
            || (auth_on && caller.tenant != caller.principal.tenant));
    req.extensions_mut().insert(caller.clone());
    let response = next.run(req).await;
    let status = response.status();
    if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>().copied()
        && matches!(status.as_u16(), 401 | 403 | 429)
    {
        audit::refused(
            &state.metrics,
            &caller.principal.to_string(),
            &caller.tenant,
            &action(),
            status.as_u16(),
            code,
        );
        return response;
    }
    if audited_admin {
        audit::admin_action(
            &state.metrics,
            &caller.principal.to_string(),
            &caller.tenant,
            &action(),
            status.as_u16(),
        );
    }
    response
}

fn resolve(
    state: &NodeState,
    headers: &HeaderMap,
    access: Access,
) -> Result<Caller, (String, ApiError)> {
    let tenancy = &state.settings.tenancy;
    let principal = if !tenancy.auth_enabled() {
        Principal::anonymous()
    } else {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err((
                "unauthenticated".into(),
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "MISSING_TOKEN",
                    "missing `Authorization: Bearer <token>`",
                ),
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                // The scheme is case-insensitive (RFC 9110).
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(token)
            })
            .map(str::trim)
            .unwrap_or_default();
        match tenancy.tokens.lookup(token) {
            Some(p) => p.clone(),
            None => {
                return Err((
                    "unauthenticated".into(),
                    ApiError::new(StatusCode::UNAUTHORIZED, "BAD_TOKEN", "unknown token"),
                ));
            }
        }
    };
    if access == Access::Admin && !principal.is_admin() {
        return Err((
            principal.to_string(),
            ApiError::new(
                StatusCode::FORBIDDEN,
                "ADMIN_ONLY",
                "this endpoint needs an admin token",
            ),
        ));
    }
    let named = match headers.get(TENANT_HEADER) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|t| crate::config::valid_tenant(t))
                .ok_or_else(|| {
                    (
                        principal.to_string(),
                        ApiError::bad_request(
                            "INVALID_HEADER",
                            "X-Sentinel-Tenant: must be 1-128 characters of letters, digits, '-', '_', '.', ':', not starting with `__` (reserved)",
                        ),
                    )
                })?
                .to_string(),
        ),
    };
    match named {
        Some(t) if t != principal.tenant && !principal.is_admin() => Err((
            principal.to_string(),
            ApiError::new(
                StatusCode::FORBIDDEN,
                "WRONG_TENANT",
                "a tenant token acts only on its own tenant",
            ),
        )),
        Some(t) => Ok(Caller {
            principal,
            tenant: t,
            all_tenants: false,
        }),
        None => Ok(Caller {
            all_tenants: principal.is_admin(),
            tenant: principal.tenant.clone(),
            principal,
        }),
    }
}
