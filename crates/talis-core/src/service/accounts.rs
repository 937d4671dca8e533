//! Users (owners), their API keys and SSH keys.

use talis_api::decode::Valid;
use talis_api::{
    ApiKey, ApiKeyCreate, ApiKeyCreated, IdRef, OwnerId, OwnerList, Page, Paged, SshKey,
    SshKeyCreate, SshKeyDelete, User, UserCreate, UserCreated, UserGet, UserGetResult,
};

use super::quotas::Quota;
use super::{PageQuery, Service, owner_filter};
use crate::auth::{self, Caller};
use crate::db::{RowExt, Value};
use crate::{Error, Result, now, rows};

impl Service<'_> {
    pub(super) fn user_create(&self, _: &Caller, p: Valid<UserCreate>) -> Result<UserCreated> {
        self.tx(|| {
            if self.q1("SELECT 1 FROM users WHERE username = ? AND deleted_at IS NULL", &[(&p.username).into()])?.is_some() {
                return Err(Error::Conflict(format!("username '{}' already exists", p.username)));
            }
            let ts = now();
            let id = self
                .q1(
                    "INSERT INTO users (username, email, role, public_ssh_key, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                    &[
                        (&p.username).into(),
                        (&p.email).into(),
                        i64::from(p.role).into(),
                        (&p.public_ssh_key).into(),
                        (&ts).into(),
                        (&ts).into(),
                    ],
                )?
                .map(|r| OwnerId::from_db(r.int(0)))
                .ok_or_else(|| Error::Db("user insert returned no row".into()))?;
            let created = self.insert_api_key(id, "initial")?;
            Ok(UserCreated { id, api_key: created.api_key })
        })
    }

    fn user_by(&self, filter: &str, arg: Value) -> Result<Option<User>> {
        Ok(self
            .q1(
                &format!(
                    "SELECT {} FROM users WHERE {filter} AND deleted_at IS NULL",
                    rows::USER
                ),
                &[arg],
            )?
            .map(|r| rows::user(&r)))
    }

    /// Admins see every user; a user sees only themself.
    pub(super) fn user_get(&self, c: &Caller, p: Valid<UserGet>) -> Result<UserGetResult> {
        if let Some(name) = p.username.as_deref().filter(|n| !n.is_empty()) {
            let user = self
                .user_by("username = ?", name.into())?
                .filter(|u| c.admin || u.id == c.owner_id);
            return Ok(UserGetResult {
                user: Some(user.ok_or(Error::NotFound("user"))?),
                users: None,
                pagination: None,
            });
        }
        let (filter, args) = owner_filter(c.scope(None)?, "deleted_at IS NULL");
        let filter = filter.replace("owner_id", "id");
        let query = PageQuery {
            columns: rows::USER,
            from: "users",
            filter: &filter,
            id_col: "id",
        };
        let page = self.page(query, args, rows::user, |u| u.id.get(), p.paging())?;
        Ok(UserGetResult {
            user: None,
            users: Some(page.rows),
            pagination: Some(page.pagination),
        })
    }

    pub(super) fn user_get_id(&self, c: &Caller, p: Valid<IdRef>) -> Result<User> {
        self.user_by("id = ?", p.id.get().into())?
            .filter(|u| c.admin || u.id == c.owner_id)
            .ok_or(Error::NotFound("user"))
    }

    /// Soft delete; the user's API keys stop working at once. The bootstrap admin owner (id 0)
    /// is not a positive id and so cannot be named.
    pub(super) fn user_delete(&self, _: &Caller, p: Valid<IdRef>) -> Result<()> {
        self.tx(|| {
            self.user_by("id = ?", p.id.get().into())?
                .ok_or(Error::NotFound("user"))?;
            let ts = now();
            self.q(
                "UPDATE users SET deleted_at = ?1, updated_at = ?1 WHERE id = ?2",
                &[(&ts).into(), p.id.get().into()],
            )?;
            self.q(
                "UPDATE api_keys SET revoked_at = ? WHERE owner_id = ? AND revoked_at IS NULL",
                &[ts.into(), p.id.get().into()],
            )?;
            Ok(())
        })
    }

    pub(super) fn sshkey_create(&self, c: &Caller, p: Valid<SshKeyCreate>) -> Result<SshKey> {
        let owner = c.acting_for(p.owner_id)?;
        self.tx(|| {
            self.require_owner(owner)?;
            self.check_quota(owner, Quota::SshKeys, 1)?;
            if self
                .q1("SELECT 1 FROM ssh_keys WHERE owner_id = ? AND name = ? AND deleted_at IS NULL", &[
                    owner.get().into(),
                    (&p.name).into(),
                ])?
                .is_some()
            {
                return Err(Error::Conflict(format!("SSH key '{}' already exists", p.name)));
            }
            let row = self
                .q1(
                    &format!(
                        "INSERT INTO ssh_keys (owner_id, name, public_key, created_at) VALUES (?, ?, ?, ?) RETURNING {}",
                        rows::SSH_KEY
                    ),
                    &[owner.get().into(), (&p.name).into(), (&p.public_key).into(), now().into()],
                )?
                .ok_or_else(|| Error::Db("ssh key insert returned no row".into()))?;
            Ok(rows::ssh_key(&row))
        })
    }

    /// A bare array, as the original answered (see the method table on paging).
    pub(super) fn sshkey_list(&self, c: &Caller, p: Valid<OwnerList>) -> Result<Vec<SshKey>> {
        let (filter, args) = owner_filter(c.scope(p.owner_id)?, "deleted_at IS NULL");
        let query = PageQuery {
            columns: rows::SSH_KEY,
            from: "ssh_keys",
            filter: &filter,
            id_col: "id",
        };
        Ok(self
            .page(query, args, rows::ssh_key, |k| k.id.get(), p.paging())?
            .rows)
    }

    pub(super) fn sshkey_delete(&self, c: &Caller, p: Valid<SshKeyDelete>) -> Result<()> {
        let owner = c.acting_for(p.owner_id)?;
        let deleted = self.q(
            "UPDATE ssh_keys SET deleted_at = ? WHERE owner_id = ? AND name = ? AND deleted_at IS NULL RETURNING id",
            &[now().into(), owner.get().into(), (&p.name).into()],
        )?;
        if deleted.is_empty() {
            Err(Error::NotFound("SSH key"))
        } else {
            Ok(())
        }
    }

    fn insert_api_key(&self, owner: OwnerId, name: &str) -> Result<ApiKeyCreated> {
        let key = auth::new_api_key();
        let prefix: String = key.chars().take(auth::KEY_PREFIX.len() + 6).collect();
        let row = self
            .q1(
                &format!(
                    "INSERT INTO api_keys (owner_id, name, key_hash, prefix, created_at) VALUES (?, ?, ?, ?, ?) RETURNING {}",
                    rows::API_KEY
                ),
                &[owner.get().into(), name.into(), auth::hash_key(&key).into(), prefix.into(), now().into()],
            )?
            .ok_or_else(|| Error::Db("api key insert returned no row".into()))?;
        Ok(ApiKeyCreated {
            key: rows::api_key(&row),
            api_key: key,
        })
    }

    pub(super) fn apikey_create(
        &self,
        c: &Caller,
        p: Valid<ApiKeyCreate>,
    ) -> Result<ApiKeyCreated> {
        let owner = c.acting_for(p.owner_id)?;
        self.tx(|| {
            self.require_owner(owner)?;
            self.check_quota(owner, Quota::ApiKeys, 1)?;
            self.insert_api_key(owner, &p.name)
        })
    }

    pub(super) fn apikey_list(&self, c: &Caller, p: Valid<OwnerList>) -> Result<Page<ApiKey>> {
        let (filter, args) = owner_filter(c.scope(p.owner_id)?, "1 = 1");
        let query = PageQuery {
            columns: rows::API_KEY,
            from: "api_keys",
            filter: &filter,
            id_col: "id",
        };
        self.page(query, args, rows::api_key, |k| k.id.get(), p.paging())
    }

    pub(super) fn apikey_revoke(&self, c: &Caller, p: Valid<IdRef>) -> Result<()> {
        let (filter, mut args) = owner_filter(c.scope(None)?, "id = ?");
        args.insert(0, now().into());
        args.push(p.id.get().into());
        let rows = self.q(&format!("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE {filter} RETURNING id"), &args)?;
        if rows.is_empty() {
            Err(Error::NotFound("API key"))
        } else {
            Ok(())
        }
    }
}
