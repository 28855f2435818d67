//! Bearer tokens and roles. The daemon keeps only the SHA-256 of each token.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Supervisor,
    Integration,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Supervisor => "supervisor",
            Role::Integration => "integration",
            Role::Admin => "admin",
        }
    }
}

/// A kind of call, and the roles that may make it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Every `GET`.
    Read,
    /// Assign, transfer, release, remove.
    Supervise,
    /// Create conversations, write representatives and queues, lifecycle events.
    Integrate,
    /// Reload rules.
    Administer,
}

impl Permission {
    pub fn allows(self, role: Role) -> bool {
        match self {
            Permission::Read => true,
            Permission::Supervise => matches!(role, Role::Supervisor | Role::Admin),
            Permission::Integrate => matches!(role, Role::Integration | Role::Admin),
            Permission::Administer => role == Role::Admin,
        }
    }

    pub fn roles(self) -> &'static str {
        match self {
            Permission::Read => "supervisor, integration or admin",
            Permission::Supervise => "supervisor or admin",
            Permission::Integrate => "integration or admin",
            Permission::Administer => "admin",
        }
    }
}

/// A configured token: its name (the actor in history), role and digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenEntry {
    pub name: String,
    pub role: Role,
    pub sha256: [u8; 32],
}

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub role: Role,
    /// Hex SHA-256 of the token; scopes idempotency keys.
    pub token_digest: String,
}

impl Actor {
    /// The daemon itself, for the changes it makes on its own (a rules reload's feed
    /// item). It has no token, so it can use no idempotency key.
    pub fn daemon(name: &str) -> Self {
        Actor { name: name.to_owned(), role: Role::Admin, token_digest: String::new() }
    }
}

/// The configured tokens.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    entries: Vec<TokenEntry>,
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl Tokens {
    pub fn new(entries: Vec<TokenEntry>) -> Self {
        Self { entries }
    }

    /// The actor a bearer token belongs to. Compares against every entry in constant time.
    pub fn verify(&self, token: &str) -> Option<Actor> {
        let digest = sha256(token.as_bytes());
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.sha256.ct_eq(&digest)) && found.is_none() {
                found = Some(entry);
            }
        }
        found.map(|e| Actor { name: e.name.clone(), role: e.role, token_digest: hex::encode(digest) })
    }
}

/// A fresh random token (256 bits, hex) and the digest to configure for it.
pub fn new_token() -> Result<(String, String), getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let token = format!("sb_{}", hex::encode(bytes));
    let digest = hex::encode(sha256(token.as_bytes()));
    Ok((token, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_by_digest_only() {
        let tokens =
            Tokens::new(vec![TokenEntry { name: "alice".into(), role: Role::Supervisor, sha256: sha256(b"s3cret") }]);
        assert_eq!(tokens.verify("s3cret").map(|a| a.name), Some("alice".into()));
        assert!(tokens.verify("s3cre").is_none());
        assert!(tokens.verify("").is_none());
    }

    #[test]
    fn fresh_tokens_verify_against_their_digest() {
        let (token, digest) = new_token().unwrap();
        let (other, _) = new_token().unwrap();
        assert_ne!(token, other);
        assert_eq!(hex::encode(sha256(token.as_bytes())), digest);
    }

    #[test]
    fn permissions_follow_the_role_table() {
        use Permission::*;
        use Role::*;
        assert!(Read.allows(Supervisor) && Read.allows(Integration) && Read.allows(Admin));
        assert!(Supervise.allows(Supervisor) && !Supervise.allows(Integration) && Supervise.allows(Admin));
        assert!(!Integrate.allows(Supervisor) && Integrate.allows(Integration) && Integrate.allows(Admin));
        assert!(!Administer.allows(Supervisor) && !Administer.allows(Integration) && Administer.allows(Admin));
    }
}
