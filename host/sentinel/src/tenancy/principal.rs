//! Principals and roles: who a caller is once its token is known.

use std::fmt;

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Acts on its own tenant's tasks, results, DLQ, memory and locks only.
    Tenant,
    /// An operator: cluster changes, the fleet's workers, and any tenant, naming it.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Tenant => "tenant",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "tenant" => Some(Role::Tenant),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A caller's identity: the token's name, its home tenant and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name, for audit logs (never the token).
    pub name: String,
    /// The tenant it acts on unless (an admin) it names another.
    pub tenant: String,
    pub role: Role,
}

impl Principal {
    pub fn new(name: &str, tenant: &str, role: Role) -> Principal {
        Principal {
            name: name.to_string(),
            tenant: tenant.to_string(),
            role,
        }
    }

    /// Who calls when authentication is off: an admin of the `default` tenant.
    pub fn anonymous() -> Principal {
        Principal::new(
            "anonymous",
            sentinel_coord::model::DEFAULT_TENANT,
            Role::Admin,
        )
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} of {})",
            self.name,
            self.role.as_str(),
            self.tenant
        )
    }
}
