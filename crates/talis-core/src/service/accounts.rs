//! Users (owners), their API keys and SSH keys.

use super::Service;
use super::projects::owner_filter;
use crate::auth::{self, Caller};
use crate::db::RowExt;
use crate::model::{ApiKey, SshKey, User};
use crate::params::*;
use crate::{Error, Result, now, validate};

impl Service<'_> {
    pub(super) fn user_create(&self, p: UserCreate) -> Result<UserCreated> {
        let username = validate::name("username", &p.username, 64)?;
        if !username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(Error::invalid(
                "username",
                "may contain only letters, digits, '_', '-' and '.'",
            ));
        }
        let email = validate::email("email", &p.email)?;
        if !matches!(p.role, 0 | 1) {
            return Err(Error::invalid("role", "must be 0 (user) or 1 (admin)"));
        }
        let ssh = if p.public_ssh_key.trim().is_empty() {
            String::new()
        } else {
            validate::ssh_public_key("public_ssh_key", &p.public_ssh_key)?
        };
        self.tx(|| {
            if self.q1("SELECT 1 FROM users WHERE username = ? AND deleted_at IS NULL", &[(&username).into()])?.is_some() {
                return Err(Error::Conflict(format!("username '{username}' already exists")));
            }
            let ts = now();
            let id = self
                .q1(
                    "INSERT INTO users (username, email, role, public_ssh_key, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                    &[username.into(), email.into(), p.role.into(), ssh.into(), (&ts).into(), (&ts).into()],
                )?
                .map(|r| r.int(0))
                .ok_or_else(|| Error::Db("user insert returned no row".into()))?;
            let created = self.insert_api_key(id, "initial")?;
            Ok(UserCreated { id, api_key: created.api_key })
        })
    }

    fn user_by(&self, filter: &str, arg: crate::db::Value) -> Result<Option<User>> {
        Ok(self
            .q1(
                &format!(
                    "SELECT {} FROM users WHERE {filter} AND deleted_at IS NULL",
                    User::COLUMNS
                ),
                &[arg],
            )?
            .map(|r| User::from_row(&r)))
    }

    /// Admins see every user; a user sees only themself.
    pub(super) fn user_get(&self, c: &Caller, p: UserGet) -> Result<UserGetResult> {
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
        let page = self.page(
            User::COLUMNS,
            "users",
            &filter.replace("owner_id", "id"),
            args,
            "id",
            User::from_row,
            |u| u.id,
            &p.page,
        )?;
        Ok(UserGetResult {
            user: None,
            users: Some(page.rows),
            pagination: Some(page.pagination),
        })
    }

    pub(super) fn user_get_id(&self, c: &Caller, p: IdRef) -> Result<User> {
        let id = validate::positive_id("id", p.id)?;
        self.user_by("id = ?", id.into())?
            .filter(|u| c.admin || u.id == c.owner_id)
            .ok_or(Error::NotFound("user"))
    }

    /// Soft delete; the user's API keys stop working at once.
    pub(super) fn user_delete(&self, p: IdRef) -> Result<()> {
        // Id 0, the bootstrap admin owner, is not a positive id and so cannot be deleted.
        let id = validate::positive_id("id", p.id)?;
        self.tx(|| {
            self.user_by("id = ?", id.into())?
                .ok_or(Error::NotFound("user"))?;
            let ts = now();
            self.q(
                "UPDATE users SET deleted_at = ?1, updated_at = ?1 WHERE id = ?2",
                &[(&ts).into(), id.into()],
            )?;
            self.q(
                "UPDATE api_keys SET revoked_at = ? WHERE owner_id = ? AND revoked_at IS NULL",
                &[ts.into(), id.into()],
            )?;
            Ok(())
        })
    }

    pub(super) fn sshkey_create(&self, c: &Caller, p: SshKeyCreate) -> Result<SshKey> {
        let name = validate::name("name", &p.name, 100)?;
        let key = validate::ssh_public_key("public_key", &p.public_key)?;
        let owner = c.acting_for(p.owner_id)?;
        self.tx(|| {
            self.require_owner(owner)?;
            if self
                .q1("SELECT 1 FROM ssh_keys WHERE owner_id = ? AND name = ? AND deleted_at IS NULL", &[
                    owner.into(),
                    (&name).into(),
                ])?
                .is_some()
            {
                return Err(Error::Conflict(format!("SSH key '{name}' already exists")));
            }
            let row = self
                .q1(
                    &format!(
                        "INSERT INTO ssh_keys (owner_id, name, public_key, created_at) VALUES (?, ?, ?, ?) RETURNING {}",
                        SshKey::COLUMNS
                    ),
                    &[owner.into(), name.into(), key.into(), now().into()],
                )?
                .ok_or_else(|| Error::Db("ssh key insert returned no row".into()))?;
            Ok(SshKey::from_row(&row))
        })
    }

    pub(super) fn sshkey_list(&self, c: &Caller, p: OwnerList) -> Result<Page<SshKey>> {
        let (filter, args) = owner_filter(c.scope(p.owner_id)?, "deleted_at IS NULL");
        self.page(
            SshKey::COLUMNS,
            "ssh_keys",
            &filter,
            args,
            "id",
            SshKey::from_row,
            |k| k.id,
            &p.page,
        )
    }

    pub(super) fn sshkey_delete(&self, c: &Caller, p: SshKeyDelete) -> Result<()> {
        let name = validate::name("name", &p.name, 100)?;
        let owner = c.acting_for(p.owner_id)?;
        let deleted = self.q(
            "UPDATE ssh_keys SET deleted_at = ? WHERE owner_id = ? AND name = ? AND deleted_at IS NULL RETURNING id",
            &[now().into(), owner.into(), name.into()],
        )?;
        if deleted.is_empty() {
            Err(Error::NotFound("SSH key"))
        } else {
            Ok(())
        }
    }

    fn insert_api_key(&self, owner: i64, name: &str) -> Result<ApiKeyCreated> {
        let key = auth::new_api_key();
        let prefix: String = key.chars().take(auth::KEY_PREFIX.len() + 6).collect();
        let row = self
            .q1(
                &format!(
                    "INSERT INTO api_keys (owner_id, name, key_hash, prefix, created_at) VALUES (?, ?, ?, ?, ?) RETURNING {}",
                    ApiKey::COLUMNS
                ),
                &[owner.into(), name.into(), auth::hash_key(&key).into(), prefix.into(), now().into()],
            )?
            .ok_or_else(|| Error::Db("api key insert returned no row".into()))?;
        Ok(ApiKeyCreated {
            key: ApiKey::from_row(&row),
            api_key: key,
        })
    }

    pub(super) fn apikey_create(&self, c: &Caller, p: ApiKeyCreate) -> Result<ApiKeyCreated> {
        let owner = c.acting_for(p.owner_id)?;
        if p.name.chars().count() > 100 {
            return Err(Error::invalid("name", "must be at most 100 characters"));
        }
        self.tx(|| {
            self.require_owner(owner)?;
            self.insert_api_key(owner, p.name.trim())
        })
    }

    pub(super) fn apikey_list(&self, c: &Caller, p: OwnerList) -> Result<Page<ApiKey>> {
        let (filter, args) = owner_filter(c.scope(p.owner_id)?, "1 = 1");
        self.page(
            ApiKey::COLUMNS,
            "api_keys",
            &filter,
            args,
            "id",
            ApiKey::from_row,
            |k| k.id,
            &p.page,
        )
    }

    pub(super) fn apikey_revoke(&self, c: &Caller, p: IdRef) -> Result<()> {
        let id = validate::positive_id("id", p.id)?;
        let (filter, mut args) = owner_filter(c.scope(None)?, "id = ?");
        args.insert(0, now().into());
        args.push(id.into());
        let rows = self.q(&format!("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE {filter} RETURNING id"), &args)?;
        if rows.is_empty() {
            Err(Error::NotFound("API key"))
        } else {
            Ok(())
        }
    }
}
