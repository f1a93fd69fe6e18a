//! Which tokens are staff tokens: a bearer JWT (verified as any customer
//! token is) whose claim at `SHOP__AUTH__STAFF_CLAIM` holds
//! `SHOP__AUTH__STAFF_ROLE`. Identity providers put roles in different
//! places and shapes, and each of these is understood:
//!
//! - an array of strings: `{"roles": ["shop-staff"]}`, Keycloak's
//!   `{"realm_access": {"roles": [...]}}` (path `realm_access.roles`), an
//!   Auth0 namespaced claim `{"https://shop.example/roles": [...]}`;
//! - a space-separated string: `{"scope": "openid shop-staff"}`;
//! - an object whose keys are the roles: Zitadel's
//!   `{"urn:zitadel:iam:org:project:roles": {"shop-staff": {...}}}`.
//!
//! The path is dotted, and a claim name may itself hold dots (Auth0's
//! namespaces are URLs): at each level, a key equal to the whole rest of the
//! path is taken first; otherwise the path is split at a dot, the shorter
//! key first (so `https://shop.example/roles` names that top-level claim,
//! and `realm_access.roles` the `roles` inside `realm_access`).

use serde_json::{Map, Value};

/// The default claim path (`SHOP__AUTH__STAFF_CLAIM`).
pub const DEFAULT_CLAIM: &str = "roles";
/// The default role (`SHOP__AUTH__STAFF_ROLE`).
pub const DEFAULT_ROLE: &str = "shop-staff";

/// Where a staff token says it is one, and what it must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffClaim {
    path: String,
    role: String,
}

impl Default for StaffClaim {
    fn default() -> Self {
        Self {
            path: DEFAULT_CLAIM.to_owned(),
            role: DEFAULT_ROLE.to_owned(),
        }
    }
}

/// Why a staff claim setting is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StaffClaimError {
    #[error("the claim path must not be empty, nor begin or end with a dot")]
    Path,
    #[error("the role must be 1 to 256 characters without spaces")]
    Role,
}

impl StaffClaim {
    /// `path` (dotted) must hold `role`.
    pub fn new(path: &str, role: &str) -> Result<Self, StaffClaimError> {
        let path = path.trim();
        if path.is_empty() || path.starts_with('.') || path.ends_with('.') {
            return Err(StaffClaimError::Path);
        }
        // A role with a space could never be found in a space-separated string.
        if role.is_empty() || role.len() > 256 || role.chars().any(char::is_whitespace) {
            return Err(StaffClaimError::Role);
        }
        Ok(Self {
            path: path.to_owned(),
            role: role.to_owned(),
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn role(&self) -> &str {
        &self.role
    }

    /// Whether a token's claims make it a staff token.
    pub fn holds(&self, claims: &Map<String, Value>) -> bool {
        lookup(claims, &self.path).is_some_and(|value| has_role(value, &self.role))
    }

    /// The claims that make a token a staff token (what `shop token --staff`
    /// adds): the role in an array at the path, nested at each dot, except
    /// that a path holding `/` is one namespaced claim name (a URL, as Auth0
    /// wants them) and `scope` is a space-separated string.
    pub fn claims(&self) -> Map<String, Value> {
        let value = if self.path == "scope" {
            Value::String(self.role.clone())
        } else {
            Value::Array(vec![Value::String(self.role.clone())])
        };
        let segments: Vec<&str> = if self.path.contains('/') {
            vec![self.path.as_str()]
        } else {
            self.path.split('.').collect()
        };
        let mut nested = value;
        for segment in segments.iter().rev() {
            let mut object = Map::new();
            object.insert((*segment).to_owned(), nested);
            nested = Value::Object(object);
        }
        match nested {
            Value::Object(object) => object,
            _ => Map::new(),
        }
    }
}

/// The value at a dotted `path` in `object` (see the module's documentation).
fn lookup<'a>(object: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = object.get(path) {
        return Some(value);
    }
    path.match_indices('.').find_map(|(at, _)| {
        let (key, rest) = (&path[..at], &path[at + 1..]);
        match object.get(key) {
            Some(Value::Object(inner)) if !rest.is_empty() => lookup(inner, rest),
            _ => None,
        }
    })
}

/// Whether a claim's value holds `role`.
fn has_role(value: &Value, role: &str) -> bool {
    match value {
        Value::Array(items) => items.iter().any(|item| item.as_str() == Some(role)),
        Value::String(text) => text.split_whitespace().any(|word| word == role),
        Value::Object(roles) => roles.contains_key(role),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(object) => object,
            _ => panic!("an object"),
        }
    }

    fn staff(path: &str, token: Value) -> bool {
        StaffClaim::new(path, "shop-staff")
            .unwrap()
            .holds(&claims(token))
    }

    #[test]
    fn an_array_of_roles_at_the_default_path() {
        assert!(staff("roles", json!({"roles": ["reader", "shop-staff"]})));
        assert!(!staff("roles", json!({"roles": ["reader"]})));
        assert!(!staff("roles", json!({"roles": []})));
        assert!(!staff("roles", json!({"sub": "alice"})), "no claim");
        assert!(
            !staff("roles", json!({"roles": ["Shop-Staff", "shop-staff-x"]})),
            "roles match exactly"
        );
        assert!(!staff("roles", json!({"roles": [["shop-staff"]]})));
        assert!(!staff("roles", json!({"roles": true})));
        assert!(!staff("roles", json!({"roles": null})));
    }

    #[test]
    fn keycloak_realm_roles_at_a_nested_path() {
        let token = json!({"realm_access": {"roles": ["offline_access", "shop-staff"]}});
        assert!(staff("realm_access.roles", token.clone()));
        assert!(!staff("roles", token.clone()));
        assert!(!staff("realm_access", token));
        let client = json!({"resource_access": {"shop-api": {"roles": ["shop-staff"]}}});
        assert!(staff("resource_access.shop-api.roles", client));
        assert!(!staff(
            "realm_access.roles",
            json!({"realm_access": ["shop-staff"]})
        ));
    }

    #[test]
    fn a_space_separated_scope() {
        assert!(staff("scope", json!({"scope": "openid shop-staff email"})));
        assert!(staff("scope", json!({"scope": "shop-staff"})));
        assert!(!staff("scope", json!({"scope": "openid shop-staffer"})));
        assert!(!staff("scope", json!({"scope": ""})));
    }

    #[test]
    fn zitadel_project_roles_as_object_keys() {
        let path = "urn:zitadel:iam:org:project:roles";
        let token = json!({path: {"shop-staff": {"312909075211944344": "shop.example"}}});
        assert!(staff(path, token));
        assert!(!staff(path, json!({path: {"shop-reader": {}}})));
    }

    #[test]
    fn an_auth0_namespaced_claim_is_taken_whole_though_it_has_dots() {
        let path = "https://shop.example/roles";
        assert!(staff(path, json!({path: ["shop-staff"]})));
        assert!(!staff(path, json!({path: ["admin"]})));
        // The same path split at its dots also names a value: the whole key wins.
        let both = json!({path: ["admin"], "https://shop": {"example/roles": ["shop-staff"]}});
        assert!(!staff(path, both));
        // Nested under a dotted claim name: the longer key is found after the shorter fails.
        let nested = json!({"https://shop.example/app": {"roles": ["shop-staff"]}});
        assert!(staff("https://shop.example/app.roles", nested));
    }

    #[test]
    fn split_paths_backtrack_to_a_longer_key() {
        // `a` exists but leads nowhere; `a.b` is a key holding the rest.
        let token = json!({"a": {"x": 1}, "a.b": {"roles": ["shop-staff"]}});
        assert!(staff("a.b.roles", token));
    }

    #[test]
    fn settings_are_checked() {
        assert_eq!(StaffClaim::new("", "r"), Err(StaffClaimError::Path));
        assert_eq!(StaffClaim::new(".roles", "r"), Err(StaffClaimError::Path));
        assert_eq!(StaffClaim::new("roles.", "r"), Err(StaffClaimError::Path));
        assert_eq!(StaffClaim::new("roles", ""), Err(StaffClaimError::Role));
        assert_eq!(
            StaffClaim::new("roles", "shop staff"),
            Err(StaffClaimError::Role)
        );
        assert!(StaffClaim::new("urn:zitadel:iam:org:project:roles", "shop-staff").is_ok());
        assert_eq!(StaffClaim::default().path(), "roles");
        assert_eq!(StaffClaim::default().role(), "shop-staff");
    }

    #[test]
    fn minted_claims_are_found_again() {
        for (path, expected) in [
            ("roles", json!({"roles": ["shop-staff"]})),
            (
                "realm_access.roles",
                json!({"realm_access": {"roles": ["shop-staff"]}}),
            ),
            (
                "https://shop.example/roles",
                json!({"https://shop.example/roles": ["shop-staff"]}),
            ),
            (
                "urn:zitadel:iam:org:project:roles",
                json!({"urn:zitadel:iam:org:project:roles": ["shop-staff"]}),
            ),
            ("scope", json!({"scope": "shop-staff"})),
        ] {
            let claim = StaffClaim::new(path, "shop-staff").unwrap();
            let minted = claim.claims();
            assert_eq!(Value::Object(minted.clone()), expected, "{path}");
            assert!(claim.holds(&minted), "{path}");
        }
    }
}
