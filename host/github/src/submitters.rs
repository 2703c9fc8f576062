//! Who may submit tasks by opening an issue ([`SubmitterPolicy`]), and in which tenant their
//! tasks run. On a public repository anyone can open an issue from the form, and the form's
//! labels are applied whatever the author's permission, so the label alone proves nothing: the
//! importer ([`crate::issues`]) asks this policy about every submission's author and refuses the
//! others (a comment and a close; nothing is enqueued).
//!
//! An author is admitted when their `login` is listed in [`SubmitterPolicy::logins`] (compared
//! ASCII case-insensitively, as GitHub compares logins; the task runs in the mapped tenant), or
//! else when the issue's `author_association` is one of [`SubmitterPolicy::associations`] (the
//! task runs in [`SubmitterPolicy::association_tenant`]). This module only decides; it makes no
//! request.

use std::collections::{BTreeMap, BTreeSet};

use sentinel_coord::StoreError;
use sentinel_coord::model::{DEFAULT_TENANT, SYSTEM_TENANT, TenantSettings};
use serde::{Deserialize, Serialize};

/// Every value GitHub documents for an issue's `author_association`.
pub const ASSOCIATIONS: [&str; 8] = [
    "OWNER",
    "MEMBER",
    "COLLABORATOR",
    "CONTRIBUTOR",
    "FIRST_TIME_CONTRIBUTOR",
    "FIRST_TIMER",
    "MANNEQUIN",
    "NONE",
];

/// The most logins a policy may list.
pub const MAX_LOGINS: usize = 1_000;

/// GitHub logins are at most 39 characters (a bot's `[bot]` suffix comes on top).
pub const MAX_LOGIN_CHARS: usize = 39;

/// Who may submit tasks through issues. `Default`: the repository's owner, organisation members
/// and collaborators, in [`DEFAULT_TENANT`]; no login listed.
///
/// Deserialises from the host's JSON configuration in camelCase (`associations`,
/// `associationTenant`, `logins`; `association_tenant` is accepted too); a missing field keeps
/// its default and an unknown field is refused. Check it with [`Self::validate`]
/// ([`crate::GithubStore::open`] does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SubmitterPolicy {
    /// `author_association` values admitted, spelt as GitHub does (upper case, one of
    /// [`ASSOCIATIONS`], no duplicates; empty admits by login only).
    pub associations: Vec<String>,
    /// The tenant of a submission admitted by its association: a valid tenant name (1 to 128
    /// bytes), not the system tenant.
    #[serde(alias = "association_tenant")]
    pub association_tenant: String,
    /// Login → tenant. A listed login is admitted whatever its association (also `NONE`), and
    /// its tasks run in its tenant, even when its association is admitted too. At most
    /// [`MAX_LOGINS`]; each login is 1 to 39 ASCII letters, digits or hyphens, not starting with
    /// a hyphen, optionally followed by `[bot]`; no login twice (ignoring case).
    pub logins: BTreeMap<String, String>,
}

impl Default for SubmitterPolicy {
    fn default() -> Self {
        Self {
            associations: ["OWNER", "MEMBER", "COLLABORATOR"]
                .map(String::from)
                .to_vec(),
            association_tenant: DEFAULT_TENANT.to_string(),
            logins: BTreeMap::new(),
        }
    }
}

/// Why a submission's author was admitted, and where the task runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The login is listed; runs in its tenant.
    Login(String),
    /// The association is admitted; runs in [`SubmitterPolicy::association_tenant`].
    Association(String),
    /// Neither: the submission is refused.
    Refused,
}

impl Admission {
    /// The tenant the task runs in, if admitted.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Admission::Login(t) | Admission::Association(t) => Some(t),
            Admission::Refused => None,
        }
    }
}

impl SubmitterPolicy {
    /// Nobody: every submission is refused (tasks are still mirrored to issues).
    pub fn nobody() -> Self {
        Self {
            associations: Vec::new(),
            ..Self::default()
        }
    }

    /// Admits `associations` (in [`Self::association_tenant`]) in place of the current ones.
    pub fn with_associations<S: Into<String>>(
        mut self,
        associations: impl IntoIterator<Item = S>,
    ) -> Self {
        self.associations = associations.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the tenant of submissions admitted by association.
    pub fn with_association_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.association_tenant = tenant.into();
        self
    }

    /// Admits `login` whatever its association; its tasks run in `tenant`.
    pub fn with_login(mut self, login: impl Into<String>, tenant: impl Into<String>) -> Self {
        self.logins.insert(login.into(), tenant.into());
        self
    }

    /// Every rule of the field docs; the error (`StoreError::Invalid`) names the first
    /// offending entry.
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |m: String| Err(StoreError::Invalid(format!("submitter policy: {m}")));
        let mut seen = BTreeSet::new();
        for a in &self.associations {
            if !ASSOCIATIONS.contains(&a.as_str()) {
                return bad(format!(
                    "unknown association {a:?}; GitHub's are {}",
                    ASSOCIATIONS.join(", ")
                ));
            }
            if !seen.insert(a.as_str()) {
                return bad(format!("association {a} is listed twice"));
            }
        }
        check_tenant("associationTenant", &self.association_tenant)?;
        if self.logins.len() > MAX_LOGINS {
            return bad(format!(
                "{} logins listed; at most {MAX_LOGINS}",
                self.logins.len()
            ));
        }
        let mut seen = BTreeSet::new();
        for (login, tenant) in &self.logins {
            if !login_is_sane(login) {
                return bad(format!(
                    "login {login:?} is not a GitHub login (1 to {MAX_LOGIN_CHARS} ASCII \
                     letters, digits or hyphens, not starting with a hyphen, optionally \
                     followed by [bot])"
                ));
            }
            if !seen.insert(login.to_ascii_lowercase()) {
                return bad(format!(
                    "login {login} is listed twice (logins ignore case)"
                ));
            }
            check_tenant(&format!("the tenant of login {login}"), tenant)?;
        }
        Ok(())
    }

    /// Decides on an issue's author: its `login` (`None` when GitHub sent no user, e.g. a
    /// deleted account's issue) and `author_association`.
    pub fn admit(&self, login: Option<&str>, association: &str) -> Admission {
        if let Some(login) = login
            && let Some((_, tenant)) = self
                .logins
                .iter()
                .find(|(l, _)| l.eq_ignore_ascii_case(login))
        {
            return Admission::Login(tenant.clone());
        }
        if self.associations.iter().any(|a| a == association) {
            return Admission::Association(self.association_tenant.clone());
        }
        Admission::Refused
    }

    /// Who may submit, for the comment on a refused issue. Names no login and no tenant: the
    /// comment is public.
    pub fn describe(&self) -> String {
        let assoc = match self.associations.as_slice() {
            [] => None,
            [one] => Some(format!("{one} accounts")),
            [init @ .., last] => Some(format!("{} or {last} accounts", init.join(", "))),
        };
        match (assoc, self.logins.is_empty()) {
            (Some(a), true) => a,
            (Some(a), false) => format!("{a} and a list of named accounts"),
            (None, false) => "a list of named accounts".to_string(),
            (None, true) => "nobody (submissions through issues are switched off)".to_string(),
        }
    }
}

fn check_tenant(what: &str, tenant: &str) -> Result<(), StoreError> {
    TenantSettings::new(tenant)
        .validate()
        .map_err(|e| StoreError::Invalid(format!("submitter policy: {what}: {e}")))?;
    if tenant == SYSTEM_TENANT {
        return Err(StoreError::Invalid(format!(
            "submitter policy: {what}: {SYSTEM_TENANT} is the system's own tenant"
        )));
    }
    Ok(())
}

fn login_is_sane(login: &str) -> bool {
    let name = login.strip_suffix("[bot]").unwrap_or(login);
    !name.is_empty()
        && name.len() <= MAX_LOGIN_CHARS
        && !name.starts_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_admits_owner_members_and_collaborators_in_the_default_tenant() {
        let p = SubmitterPolicy::default();
        p.validate().unwrap();
        for a in ["OWNER", "MEMBER", "COLLABORATOR"] {
            assert_eq!(
                p.admit(Some("x"), a),
                Admission::Association(DEFAULT_TENANT.into())
            );
        }
        for a in [
            "CONTRIBUTOR",
            "FIRST_TIME_CONTRIBUTOR",
            "FIRST_TIMER",
            "NONE",
            "",
        ] {
            assert_eq!(p.admit(Some("x"), a), Admission::Refused, "{a}");
        }
        assert_eq!(p.admit(None, "NONE"), Admission::Refused);
    }

    #[test]
    fn a_listed_login_wins_over_its_association_and_ignores_case() {
        let p = SubmitterPolicy::default().with_login("Alice", "acme");
        assert_eq!(
            p.admit(Some("aLiCe"), "OWNER"),
            Admission::Login("acme".into())
        );
        assert_eq!(
            p.admit(Some("alice"), "NONE"),
            Admission::Login("acme".into())
        );
        assert_eq!(p.admit(Some("alicex"), "NONE"), Admission::Refused);
    }

    #[test]
    fn validation_names_the_first_bad_entry() {
        let refused = |p: SubmitterPolicy, needle: &str| {
            let e = p.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        };
        refused(
            SubmitterPolicy::default().with_associations(["OWNER", "owner"]),
            "unknown association \"owner\"",
        );
        refused(
            SubmitterPolicy::default().with_associations(["NONE", "NONE"]),
            "listed twice",
        );
        refused(
            SubmitterPolicy::default().with_association_tenant(""),
            "associationTenant",
        );
        refused(
            SubmitterPolicy::default().with_association_tenant(SYSTEM_TENANT),
            "system",
        );
        refused(
            SubmitterPolicy::default().with_login("a", "x".repeat(129)),
            "tenant of login a",
        );
        for login in ["", "-a", "a b", "a_b", "émile", &"a".repeat(40), "[bot]"] {
            refused(
                SubmitterPolicy::default().with_login(login, "t"),
                "not a GitHub login",
            );
        }
        refused(
            SubmitterPolicy::default()
                .with_login("Bob", "t")
                .with_login("bob", "u"),
            "listed twice",
        );
        let mut many = SubmitterPolicy::default();
        for i in 0..=MAX_LOGINS {
            many.logins.insert(format!("u{i}"), "t".into());
        }
        refused(many, "at most 1000");
        for ok in [
            "a",
            "octo-cat",
            "A1-",
            "github-actions[bot]",
            &"a".repeat(39),
        ] {
            SubmitterPolicy::default()
                .with_login(ok, "t")
                .validate()
                .unwrap();
        }
        SubmitterPolicy::nobody().validate().unwrap();
    }

    #[test]
    fn deserialises_from_camel_case_json_with_defaults() {
        let p: SubmitterPolicy =
            serde_json::from_str(r#"{"associationTenant": "team", "logins": {"octocat": "acme"}}"#)
                .unwrap();
        assert_eq!(p.associations, SubmitterPolicy::default().associations);
        assert_eq!(p.association_tenant, "team");
        assert_eq!(p.logins["octocat"], "acme");
        let p: SubmitterPolicy =
            serde_json::from_str(r#"{"association_tenant": "t", "associations": []}"#).unwrap();
        assert_eq!(
            (p.association_tenant.as_str(), p.associations.len()),
            ("t", 0)
        );
        assert!(serde_json::from_str::<SubmitterPolicy>(r#"{"admins": []}"#).is_err());
    }

    #[test]
    fn the_public_description_names_no_login() {
        let p = SubmitterPolicy::default().with_login("secret-friend", "acme");
        let d = p.describe();
        assert_eq!(
            d,
            "OWNER, MEMBER or COLLABORATOR accounts and a list of named accounts"
        );
        assert!(SubmitterPolicy::nobody().describe().starts_with("nobody"));
    }
}
