//! Setting a fresh Vault (or OpenBao) up for Coffer, with an operator's token: what
//! `cargo xtask vault-setup` runs, and what the tests use to make their own mounts, users and
//! roles. Every step may be repeated: what exists already is left as it is.
//!
//! [`setup`] runs a [`Plan`]: the Transit and KV v2 mounts, the derived Transit key, the KV
//! master key, the policies and the userpass users. The policies of `deploy/vault/` are embedded
//! as [`API_POLICY`] and [`WORKER_POLICY`], so the tests and the setup install exactly those
//! files; [`policy_for_key`] renames their key.

use std::sync::Arc;

use reqwest::Method;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

use crate::session::{CallError, Session, VaultConnection};
use crate::{KvSettings, TransitSettings, VaultKvProvider, VaultTransitProvider};
use coffer_keys::KeyError;

/// The API's policy (`deploy/vault/coffer-api.hcl`): generate and unwrap, read the key.
pub const API_POLICY: &str = include_str!("../../../deploy/vault/coffer-api.hcl");
/// The rotation worker's policy (`deploy/vault/coffer-worker.hcl`): also rotate, rewrap, retire.
pub const WORKER_POLICY: &str = include_str!("../../../deploy/vault/coffer-worker.hcl");

/// A policy of `deploy/vault/` for a master key named `key` instead of `coffer-master`.
#[must_use]
pub fn policy_for_key(hcl: &str, key: &str) -> String {
    hcl.replace("coffer-master", key)
}

/// An operator's session (a token with rights on `sys/`).
#[derive(Debug)]
pub struct Admin {
    session: Arc<Session>,
}

/// Why a provisioning step failed.
#[derive(Debug, thiserror::Error)]
#[error("Vault setup step {step:?} failed: {reason}")]
pub struct ProvisionError {
    /// What was being done.
    pub step: String,
    /// Vault's answer (never a secret).
    pub reason: String,
}

fn failed(step: &str, reason: impl Into<String>) -> ProvisionError {
    ProvisionError {
        step: step.to_owned(),
        reason: reason.into(),
    }
}

/// Somebody else mounting the same path at the same moment is success too.
fn already_there(outcome: Result<Value, ProvisionError>) -> Result<(), ProvisionError> {
    match outcome {
        Err(e) if e.reason.contains("path is already in use") => Ok(()),
        other => other.map(drop),
    }
}

/// A user and the policies its tokens get.
#[derive(Debug, Clone)]
pub struct UserSpec {
    /// The userpass user name.
    pub name: String,
    /// Its password; `None` keeps an existing user's password (and fails for a new user).
    pub password: Option<SecretString>,
    /// Policy names.
    pub policies: Vec<String>,
}

/// What [`setup`] creates.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The Transit mount and key (created derived).
    pub transit: TransitSettings,
    /// The KV v2 mount and master key secret.
    pub kv: KvSettings,
    /// `(name, HCL)` policies, e.g. from `deploy/vault/*.hcl`.
    pub policies: Vec<(String, String)>,
    /// userpass users on the `userpass` mount.
    pub users: Vec<UserSpec>,
}

impl Admin {
    /// Connects with an operator token.
    ///
    /// # Errors
    /// The key port's `Unavailable` or `Denied`.
    pub async fn connect(conn: VaultConnection) -> Result<Self, KeyError> {
        let session = Session::connect(conn)
            .await
            .map_err(|e| crate::key_error("vault", "-", e))?;
        Ok(Self { session })
    }

    /// One request; a status outside 2xx is an error naming `step`.
    ///
    /// # Errors
    /// [`ProvisionError`].
    pub async fn request(
        &self,
        step: &str,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<Value, ProvisionError> {
        let (status, answer) = self
            .session
            .raw(method, path, body)
            .await
            .map_err(|e| failed(step, e.message()))?;
        if (200..300).contains(&status) {
            Ok(answer)
        } else {
            Err(failed(
                step,
                CallError::Status {
                    code: status,
                    errors: answer["errors"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|e| e.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                }
                .message(),
            ))
        }
    }

    /// Mounts a secrets engine at `path` unless something is mounted there.
    ///
    /// # Errors
    /// [`ProvisionError`].
    pub async fn enable_secrets(
        &self,
        path: &str,
        kind: &str,
        options: Value,
    ) -> Result<(), ProvisionError> {
        let step = format!("mount {kind} at {path}");
        let mounts = self
            .request(&step, Method::GET, "sys/mounts", &Value::Null)
            .await?;
        let key = format!("{}/", path.trim_end_matches('/'));
        if mounts["data"].get(&key).is_some() || mounts.get(&key).is_some() {
            return Ok(());
        }
        let mounted = self
            .request(
                &step,
                Method::POST,
                &format!("sys/mounts/{path}"),
                &json!({ "type": kind, "options": options }),
            )
            .await;
        already_there(mounted)
    }

    /// Enables an auth method at `path` unless one is there.
    ///
    /// # Errors
    /// [`ProvisionError`].
    pub async fn enable_auth(&self, path: &str, kind: &str) -> Result<(), ProvisionError> {
        let step = format!("enable {kind} auth at {path}");
        let methods = self
            .request(&step, Method::GET, "sys/auth", &Value::Null)
            .await?;
        let key = format!("{}/", path.trim_end_matches('/'));
        if methods["data"].get(&key).is_some() || methods.get(&key).is_some() {
            return Ok(());
        }
        let enabled = self
            .request(
                &step,
                Method::POST,
                &format!("sys/auth/{path}"),
                &json!({ "type": kind }),
            )
            .await;
        already_there(enabled)
    }

    /// Writes (or replaces) an ACL policy.
    ///
    /// # Errors
    /// [`ProvisionError`].
    pub async fn put_policy(&self, name: &str, hcl: &str) -> Result<(), ProvisionError> {
        self.request(
            &format!("write policy {name}"),
            Method::PUT,
            &format!("sys/policies/acl/{name}"),
            &json!({ "policy": hcl }),
        )
        .await
        .map(drop)
    }

    /// Creates or updates a userpass user on `mount`.
    ///
    /// # Errors
    /// [`ProvisionError`].
    pub async fn put_user(&self, mount: &str, user: &UserSpec) -> Result<(), ProvisionError> {
        let mut body = json!({ "token_policies": user.policies.join(",") });
        if let Some(password) = &user.password {
            body["password"] = password.expose_secret().into();
        }
        self.request(
            &format!("write userpass user {}", user.name),
            Method::POST,
            &format!("auth/{mount}/users/{}", user.name),
            &body,
        )
        .await
        .map(drop)
    }

    /// Whether a userpass user exists on `mount`.
    ///
    /// # Errors
    /// [`ProvisionError`] when Vault cannot say.
    pub async fn user_exists(&self, mount: &str, name: &str) -> Result<bool, ProvisionError> {
        let step = format!("read userpass user {name}");
        let (status, _) = self
            .session
            .raw(
                Method::GET,
                &format!("auth/{mount}/users/{name}"),
                &Value::Null,
            )
            .await
            .map_err(|e| failed(&step, e.message()))?;
        match status {
            200 => Ok(true),
            404 => Ok(false),
            other => Err(failed(&step, format!("HTTP {other}"))),
        }
    }

    /// Creates an AppRole role with `policies` and answers its role id and a new secret id.
    ///
    /// # Errors
    /// [`ProvisionError`].
    pub async fn put_approle(
        &self,
        mount: &str,
        role: &str,
        policies: &[&str],
    ) -> Result<(String, SecretString), ProvisionError> {
        let step = format!("write AppRole role {role}");
        self.request(
            &step,
            Method::POST,
            &format!("auth/{mount}/role/{role}"),
            &json!({ "token_policies": policies.join(",") }),
        )
        .await?;
        let id = self
            .request(
                &step,
                Method::GET,
                &format!("auth/{mount}/role/{role}/role-id"),
                &Value::Null,
            )
            .await?;
        let secret = self
            .request(
                &step,
                Method::POST,
                &format!("auth/{mount}/role/{role}/secret-id"),
                &json!({}),
            )
            .await?;
        let role_id = id["data"]["role_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let secret_id = secret["data"]["secret_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if role_id.is_empty() || secret_id.is_empty() {
            return Err(failed(&step, "Vault answered no role id or secret id"));
        }
        Ok((role_id, SecretString::from(secret_id)))
    }

    /// Revokes every token whose display name is `display_name` (`userpass-<user>` for a
    /// userpass login): what an operator does when a service's credentials leak. Answers how many.
    ///
    /// # Errors
    /// [`ProvisionError`].
    pub async fn revoke_tokens_of(&self, display_name: &str) -> Result<usize, ProvisionError> {
        let step = format!("revoke the tokens of {display_name}");
        let list = Method::from_bytes(b"LIST").map_err(|e| failed(&step, e.to_string()))?;
        let accessors = self
            .request(&step, list, "auth/token/accessors", &Value::Null)
            .await?;
        let mut revoked = 0;
        for accessor in accessors["data"]["keys"].as_array().into_iter().flatten() {
            let Some(accessor) = accessor.as_str() else {
                continue;
            };
            let Ok(info) = self
                .request(
                    &step,
                    Method::POST,
                    "auth/token/lookup-accessor",
                    &json!({ "accessor": accessor }),
                )
                .await
            else {
                continue; // expired meanwhile
            };
            if info["data"]["display_name"].as_str() == Some(display_name) {
                self.request(
                    &step,
                    Method::POST,
                    "auth/token/revoke-accessor",
                    &json!({ "accessor": accessor }),
                )
                .await?;
                revoked += 1;
            }
        }
        Ok(revoked)
    }

    /// A connection like this admin's, for creating the keys with its rights.
    fn connection(&self) -> VaultConnection {
        self.session.connection().clone()
    }
}

/// Sets a fresh Vault up for Coffer: the Transit and KV mounts, the Transit key (derived), the
/// KV master key (first version, 100,000 versions kept), the policies and the userpass users.
/// Answers what it did, one line per step.
///
/// # Errors
/// [`ProvisionError`] naming the step.
pub async fn setup(admin: &Admin, plan: &Plan) -> Result<Vec<String>, ProvisionError> {
    let mut done = Vec::new();
    admin
        .enable_secrets(&plan.transit.mount, "transit", json!({}))
        .await?;
    done.push(format!("transit engine at {}/", plan.transit.mount));
    admin
        .enable_secrets(&plan.kv.mount, "kv", json!({ "version": "2" }))
        .await?;
    done.push(format!("KV v2 engine at {}/", plan.kv.mount));

    let mut transit = plan.transit.clone();
    transit.create_if_missing = true;
    VaultTransitProvider::connect(admin.connection(), transit)
        .await
        .map_err(|e| failed("create the Transit key", e.to_string()))?;
    done.push(format!(
        "Transit key {}/keys/{} (derived)",
        plan.transit.mount, plan.transit.key
    ));
    let mut kv = plan.kv.clone();
    kv.create_if_missing = true;
    VaultKvProvider::connect(admin.connection(), kv)
        .await
        .map_err(|e| failed("create the KV master key", e.to_string()))?;
    done.push(format!(
        "KV master key {}/{}/{}",
        plan.kv.mount,
        plan.kv.prefix.trim_matches('/'),
        plan.kv.key_id
    ));

    for (name, hcl) in &plan.policies {
        admin.put_policy(name, hcl).await?;
        done.push(format!("policy {name}"));
    }
    if !plan.users.is_empty() {
        admin.enable_auth("userpass", "userpass").await?;
        for user in &plan.users {
            admin.put_user("userpass", user).await?;
            done.push(format!(
                "userpass user {} with policies {}",
                user.name,
                user.policies.join(",")
            ));
        }
    }
    Ok(done)
}
