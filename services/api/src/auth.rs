//! Tokens and roles. The tenant always comes from the verified token, never from a header or
//! a parameter.

use chrono::Utc;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A role from shared/DOMAIN.md's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads orders, reference data, history.
    Readonly,
    /// Readonly plus raw events, time travel, audit export and verification.
    Auditor,
    /// Readonly plus creating and editing drafts, submit, confirm, receipts, ship, deliver, notes.
    User,
    /// User plus approve, reject, cancel, close, invoice, payments, reference data.
    Manager,
    /// Everything inside its tenant.
    Admin,
    /// Creates and lists tenants; no access to a tenant's orders.
    PlatformAdmin,
}

/// What a request wants to do, for the role check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read orders, reference data and history.
    Read,
    /// Raw events, time travel, export, verification.
    Audit,
    /// Create and edit drafts, submit, confirm, receive, ship, deliver, add notes.
    Operate,
    /// Approve, reject, cancel, close, invoice, record payments, write reference data.
    Manage,
    /// Create and list tenants.
    Platform,
    /// Erase a supplier's or customer's personal data (it cannot be undone).
    Erase,
}

impl std::str::FromStr for Role {
    type Err = String;

    /// A role by its name in tokens (`readonly`, `auditor`, `user`, `manager`, `admin`,
    /// `platform_admin`), so the command line and tokens spell roles alike.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|_| {
            format!(
                "unknown role {name:?}: use readonly, auditor, user, manager, admin or platform_admin"
            )
        })
    }
}

impl Role {
    /// Whether this role grants `permission` (exhaustive on both sides: a new role or
    /// permission forces a decision here).
    pub fn grants(self, permission: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Readonly => matches!(permission, P::Read),
            Role::Auditor => matches!(permission, P::Read | P::Audit),
            Role::User => matches!(permission, P::Read | P::Operate),
            Role::Manager => matches!(permission, P::Read | P::Operate | P::Manage),
            Role::Admin => matches!(
                permission,
                P::Read | P::Audit | P::Operate | P::Manage | P::Erase
            ),
            Role::PlatformAdmin => matches!(permission, P::Platform),
        }
    }
}

/// The token's claims (API.md: `sub`, `tenant`, `roles`, `exp`, optional `name`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The actor, recorded on every event.
    pub sub: String,
    /// The tenant; absent for platform_admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Uuid>,
    /// What the actor may do.
    pub roles: Vec<Role>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// The actor's display name, recorded with `sub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Issued at, seconds since the epoch: a token issued in the future is refused, and the
    /// lifetime is counted from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Not before, seconds since the epoch: refused until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The issuer: required to equal `OMS_JWT_ISSUER` when one is configured, so that tokens
    /// another system signs with a shared secret are not taken for ours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The audience, a string or an array of strings (RFC 7519): required to contain
    /// `OMS_JWT_AUDIENCE` when one is configured, so that a token meant for another service is
    /// refused here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
}

impl Claims {
    /// Whether any of the token's roles grants `permission`.
    pub fn may(&self, permission: Permission) -> bool {
        self.roles.iter().any(|role| role.grants(permission))
    }
}

/// The longest a token may be valid for, by default: a stolen token stops working within a week
/// at most, whatever `exp` its issuer chose (the demo token is minted for exactly this).
pub const DEFAULT_MAX_LIFETIME: chrono::Duration = chrono::Duration::days(7);

/// Signs and verifies HS256 tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    max_lifetime: chrono::Duration,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(***)")
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Past its `exp`.
    #[error("the token has expired")]
    Expired,
    /// Bad signature, wrong algorithm, missing claims, garbage.
    #[error("the token is invalid: {0}")]
    Invalid(String),
}

impl TokenKeys {
    /// Keys from the shared secret.
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Without a configured audience, a token's `aud` is not looked at (jsonwebtoken would
        // otherwise refuse every token that carries one).
        validation.validate_aud = false;
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            max_lifetime: DEFAULT_MAX_LIFETIME,
            validation,
            issuer: None,
            audience: None,
        }
    }

    /// The same keys requiring `iss` and `aud` to name `issuer` and `audience` (each when
    /// given), and minting tokens that carry them: with a secret shared among several services,
    /// a token one of them accepts is then not taken by the others.
    pub fn with_issuer_and_audience(
        mut self,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Self {
        let issuer = issuer.filter(|i| !i.is_empty());
        let audience = audience.filter(|a| !a.is_empty());
        let mut required = vec!["exp", "sub"];
        match &issuer {
            Some(issuer) => {
                self.validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => self.validation.iss = None,
        }
        match &audience {
            Some(audience) => {
                self.validation.set_audience(&[audience]);
                self.validation.validate_aud = true;
                required.push("aud");
            }
            None => {
                self.validation.aud = None;
                self.validation.validate_aud = false;
            }
        }
        self.validation.set_required_spec_claims(&required);
        self.issuer = issuer;
        self.audience = audience;
        self
    }

    /// The same keys refusing tokens valid for longer than `max_lifetime` (from `iat`, or from
    /// now for a token without one).
    pub fn with_max_lifetime(mut self, max_lifetime: chrono::Duration) -> Self {
        self.max_lifetime = max_lifetime;
        self
    }

    /// A signed token for `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signing with a byte secret cannot fail")
    }

    /// The claims of a valid token.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|err| match err.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                    TokenError::Invalid("the token is not valid yet (nbf)".into())
                }
                _ => TokenError::Invalid(err.to_string()),
            })?;
        let now = Utc::now().timestamp();
        if claims.iat.is_some_and(|iat| iat > now) {
            return Err(TokenError::Invalid(
                "the token was issued in the future (iat)".into(),
            ));
        }
        let from = claims.iat.unwrap_or(now);
        if claims.exp - from > self.max_lifetime.num_seconds() {
            return Err(TokenError::Invalid(format!(
                "the token is valid for longer than {} hours",
                self.max_lifetime.num_hours()
            )));
        }
        Ok(claims)
    }

    /// A token for `sub` in `tenant` with `roles`, valid for `ttl`.
    pub fn mint(
        &self,
        sub: &str,
        name: Option<&str>,
        tenant: Option<Uuid>,
        roles: Vec<Role>,
        ttl: chrono::Duration,
    ) -> String {
        self.sign(&Claims {
            sub: sub.to_string(),
            tenant,
            roles,
            exp: (Utc::now() + ttl).timestamp(),
            name: name.map(str::to_string),
            iat: Some(Utc::now().timestamp()),
            nbf: None,
            iss: self.issuer.clone(),
            aud: self.audience.clone().map(serde_json::Value::String),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp_in: i64, iat_in: Option<i64>, nbf_in: Option<i64>) -> Claims {
        let now = Utc::now().timestamp();
        Claims {
            sub: "mary".into(),
            tenant: Some(Uuid::nil()),
            roles: vec![Role::Admin],
            exp: now + exp_in,
            name: None,
            iat: iat_in.map(|d| now + d),
            nbf: nbf_in.map(|d| now + d),
            iss: None,
            aud: None,
        }
    }

    #[test]
    fn a_configured_issuer_and_audience_are_required_and_minted() {
        let plain = TokenKeys::new("s");
        let strict = TokenKeys::new("s")
            .with_issuer_and_audience(Some("oms".into()), Some("oms-api".into()));
        let minted = strict.mint(
            "mary",
            None,
            None,
            vec![Role::Admin],
            chrono::Duration::hours(1),
        );
        let claims = strict.verify(&minted).unwrap();
        assert_eq!(claims.iss.as_deref(), Some("oms"));
        // Tokens without them, or naming others, are refused; a list that holds ours is fine.
        let with = |iss: Option<&str>, aud: Option<serde_json::Value>| {
            let mut c = claims.clone();
            c.iss = iss.map(str::to_string);
            c.aud = aud;
            strict.verify(&strict.sign(&c))
        };
        assert!(with(Some("oms"), Some(serde_json::json!(["other", "oms-api"]))).is_ok());
        for (case, iss, aud) in [
            ("no iss", None, Some(serde_json::json!("oms-api"))),
            ("no aud", Some("oms"), None),
            (
                "another iss",
                Some("evil"),
                Some(serde_json::json!("oms-api")),
            ),
            (
                "another aud",
                Some("oms"),
                Some(serde_json::json!("billing")),
            ),
        ] {
            assert!(
                matches!(with(iss, aud), Err(TokenError::Invalid(_))),
                "{case}"
            );
        }
        // Unconfigured, neither is looked at.
        assert!(plain.verify(&minted).is_ok());
        assert!(plain
            .verify(&plain.mint(
                "mary",
                None,
                None,
                vec![Role::Admin],
                chrono::Duration::hours(1)
            ))
            .is_ok());
    }

    #[test]
    fn tokens_not_yet_valid_issued_in_the_future_or_too_long_lived_are_refused() {
        let keys = TokenKeys::new("s");
        let hour = 3600;
        assert!(keys
            .verify(&keys.sign(&claims(hour, Some(0), None)))
            .is_ok());
        assert!(keys
            .verify(&keys.sign(&claims(hour, None, Some(-60))))
            .is_ok());
        for (case, bad) in [
            ("nbf in an hour", claims(2 * hour, None, Some(hour))),
            ("iat in an hour", claims(2 * hour, Some(hour), None)),
            ("valid for 30 days", claims(30 * 24 * hour, Some(0), None)),
            (
                "valid for 30 days, no iat",
                claims(30 * 24 * hour, None, None),
            ),
        ] {
            assert!(
                matches!(keys.verify(&keys.sign(&bad)), Err(TokenError::Invalid(_))),
                "{case}"
            );
        }
        let longer = TokenKeys::new("s").with_max_lifetime(chrono::Duration::days(60));
        assert!(longer
            .verify(&longer.sign(&claims(30 * 24 * hour, Some(0), None)))
            .is_ok());
    }

    #[test]
    fn roles_parse_by_their_token_names_only() {
        assert_eq!("platform_admin".parse::<Role>(), Ok(Role::PlatformAdmin));
        assert_eq!("readonly".parse::<Role>(), Ok(Role::Readonly));
        assert!("owner".parse::<Role>().unwrap_err().contains("owner"));
        assert!("Admin".parse::<Role>().is_err());
    }

    #[test]
    fn only_managers_and_admins_manage() {
        for role in [
            Role::Readonly,
            Role::Auditor,
            Role::User,
            Role::PlatformAdmin,
        ] {
            assert!(!role.grants(Permission::Manage), "{role:?}");
        }
        assert!(Role::Manager.grants(Permission::Manage));
        assert!(Role::Admin.grants(Permission::Manage));
    }

    #[test]
    fn platform_admin_cannot_read_a_tenants_orders() {
        assert!(!Role::PlatformAdmin.grants(Permission::Read));
        assert!(Role::PlatformAdmin.grants(Permission::Platform));
        assert!(!Role::Admin.grants(Permission::Platform));
    }

    #[test]
    fn a_token_signed_with_another_secret_is_invalid() {
        let ours = TokenKeys::new("one");
        let theirs = TokenKeys::new("two");
        let token = theirs.mint(
            "mary",
            None,
            Some(Uuid::nil()),
            vec![Role::Admin],
            chrono::Duration::hours(1),
        );
        assert!(matches!(ours.verify(&token), Err(TokenError::Invalid(_))));
        assert_eq!(theirs.verify(&token).unwrap().sub, "mary");
    }

    #[test]
    fn an_expired_token_is_refused_as_expired() {
        let keys = TokenKeys::new("s");
        let token = keys.mint(
            "mary",
            None,
            None,
            vec![Role::Admin],
            chrono::Duration::seconds(-5),
        );
        assert_eq!(keys.verify(&token), Err(TokenError::Expired));
    }
}
