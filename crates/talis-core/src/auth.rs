//! API keys (generated, hashed, resolved to a caller) and the internal secret. Phone-home
//! tokens are part of the contract (`talis_api::phone_home`).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use talis_api::rules::MIN_SECRET_LEN;
use talis_api::{OwnerId, RowId};

/// Whether a configured secret is long enough to authenticate anything: a shorter one (a
/// placeholder like `CHANGE_ME`) counts as unset.
pub fn strong(secret: &str) -> bool {
    secret.chars().count() >= MIN_SECRET_LEN
}

use crate::db::{self, RowExt, Sql};
use crate::{Error, Result};

/// Who is calling, resolved from the presented API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub owner_id: OwnerId,
    /// The stored key used (`None`: the bootstrap admin key), for the audit trail.
    pub key: Option<KeyRef>,
    /// The bootstrap admin key, or a key of a user with role 1: may act for any owner.
    pub admin: bool,
}

impl Caller {
    pub const ADMIN: Caller = Caller {
        owner_id: OwnerId::ADMIN,
        key: None,
        admin: true,
    };

    /// The owner a call acts for. `owner_id` in params is accepted for compatibility with the
    /// original API but must be the caller's own id unless the caller is admin.
    pub fn acting_for(&self, owner_id: Option<OwnerId>) -> Result<OwnerId> {
        match owner_id {
            None | Some(OwnerId::ADMIN) => Ok(self.owner_id),
            Some(id) if self.admin || id == self.owner_id => Ok(id),
            Some(_) => Err(Error::Forbidden(
                "owner_id does not match the API key's owner".into(),
            )),
        }
    }

    /// Owner filter for reads by id: None lets an admin see every owner's rows.
    pub fn scope(&self, owner_id: Option<OwnerId>) -> Result<Option<OwnerId>> {
        match owner_id {
            None | Some(OwnerId::ADMIN) if self.admin => Ok(None),
            other => self.acting_for(other).map(Some),
        }
    }
}

/// A stored API key, as the audit trail names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRef {
    pub id: RowId,
    pub prefix: String,
}

/// Prefix of every generated API key (helps secret scanners and humans recognise one).
pub const KEY_PREFIX: &str = "talis_";

/// A new random API key: `talis_` + 64 hex characters (256 bits).
pub fn new_api_key() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

/// What is stored instead of a key.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Equality of two secrets in constant time, compared by their hashes so that neither the
/// content nor the length of the expected secret leaks through timing.
pub fn secure_eq(presented: &[u8], expected: &[u8]) -> bool {
    Sha256::digest(presented)
        .ct_eq(&Sha256::digest(expected))
        .into()
}

/// Resolves a presented bearer key: the bootstrap admin key, else a live stored key of a live user.
pub fn authenticate(db: &dyn Sql, admin_key: &str, presented: Option<&str>) -> Result<Caller> {
    let key = presented
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or(Error::Unauthorized)?;
    if secure_eq(key.as_bytes(), admin_key.as_bytes()) {
        if strong(admin_key) {
            return Ok(Caller::ADMIN);
        }
        eprintln!(
            "talis: a request presented admin_api_key, which is shorter than {MIN_SECRET_LEN} characters \
             and so authenticates nothing; set a longer one"
        );
        return Err(Error::Unauthorized);
    }
    let row = db::query_opt(
        db,
        "SELECT u.id, u.role, k.id, k.prefix FROM api_keys k JOIN users u ON u.id = k.owner_id \
         WHERE k.key_hash = ? AND k.revoked_at IS NULL AND u.deleted_at IS NULL",
        &[hash_key(key).into()],
    )?
    .ok_or(Error::Unauthorized)?;
    Ok(Caller {
        owner_id: OwnerId::from_db(row.int(0)),
        key: Some(KeyRef {
            id: RowId::from_db(row.int(2)),
            prefix: row.text(3),
        }),
        admin: row.int(1) == 1,
    })
}

/// Checks the internal bearer secret of `/internal/v1/`.
pub fn verify_internal(internal_secret: &str, presented: Option<&str>) -> Result<()> {
    match presented {
        Some(p)
            if strong(internal_secret)
                && secure_eq(p.trim().as_bytes(), internal_secret.as_bytes()) =>
        {
            Ok(())
        }
        _ => Err(Error::Unauthorized),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoping() {
        let alice = Caller {
            owner_id: OwnerId::from_db(5),
            key: None,
            admin: false,
        };
        let id = OwnerId::from_db;
        assert_eq!(alice.acting_for(None).unwrap(), id(5));
        assert_eq!(alice.acting_for(Some(id(5))).unwrap(), id(5));
        assert!(matches!(
            alice.acting_for(Some(id(6))),
            Err(Error::Forbidden(_))
        ));
        assert_eq!(Caller::ADMIN.acting_for(Some(id(6))).unwrap(), id(6));
        assert_eq!(Caller::ADMIN.scope(None).unwrap(), None);
        assert_eq!(alice.scope(None).unwrap(), Some(id(5)));
    }
}
