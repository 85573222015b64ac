//! Roles and permissions. Roles map to permissions by configuration (`auth.roles`), defaulting
//! to Coffer's user and admin roles; the application asks [`Rbac::allows`] once per use case.
//! Which wallet a user may touch is not a permission: it is the ledger's ownership rule.
//!
//! A table is refused when it gives a role administrative permissions together with
//! money-moving ones (an administrator never moves users' money), or when no role holds
//! `user:admin` (then no one could ever assign a role).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The default role that may erase users (`user:erase`), and read what it needs to decide.
pub const PRIVACY_ROLE: &str = "privacy";

/// One thing a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// Read wallets and transactions (own, for users).
    WalletRead,
    /// Deposit into own wallets.
    WalletDeposit,
    /// Withdraw from own wallets.
    WalletWithdraw,
    /// Transfer from own wallets.
    WalletTransfer,
    /// Open wallets, change their PIN.
    WalletManage,
    /// Administrative writes on wallets (reversals, PIN resets and unlocks).
    WalletWrite,
    /// Freeze and unfreeze wallets.
    WalletFreeze,
    /// Close wallets.
    WalletClose,
    /// Read metrics.
    SystemMetrics,
    /// Read the audit log.
    AuditRead,
    /// Read key status.
    KeyRead,
    /// Rotate keys.
    KeyRotate,
    /// Administer users (roles, revocation).
    UserAdmin,
    /// Erase a user (crypto-shredding: their keys destroyed, for good).
    UserErase,
    /// Capture any hold (a payout service): moves the held money.
    HoldCapture,
    /// Void any hold (an administrator): releases the held money.
    HoldVoid,
    /// Set wallets' spending limits.
    WalletLimits,
    /// Register, change and remove webhook endpoints, see their deliveries.
    WebhookAdmin,
}

impl Permission {
    /// Every permission.
    pub const ALL: &'static [Permission] = &[
        Self::WalletRead,
        Self::WalletDeposit,
        Self::WalletWithdraw,
        Self::WalletTransfer,
        Self::WalletManage,
        Self::WalletWrite,
        Self::WalletFreeze,
        Self::WalletClose,
        Self::SystemMetrics,
        Self::AuditRead,
        Self::KeyRead,
        Self::KeyRotate,
        Self::UserAdmin,
        Self::UserErase,
        Self::HoldCapture,
        Self::HoldVoid,
        Self::WalletLimits,
        Self::WebhookAdmin,
    ];

    /// The configuration and token name (`wallet:read`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WalletRead => "wallet:read",
            Self::WalletDeposit => "wallet:deposit",
            Self::WalletWithdraw => "wallet:withdraw",
            Self::WalletTransfer => "wallet:transfer",
            Self::WalletManage => "wallet:manage",
            Self::WalletWrite => "wallet:write",
            Self::WalletFreeze => "wallet:freeze",
            Self::WalletClose => "wallet:close",
            Self::SystemMetrics => "system:metrics",
            Self::AuditRead => "audit:read",
            Self::KeyRead => "key:read",
            Self::KeyRotate => "key:rotate",
            Self::UserAdmin => "user:admin",
            Self::UserErase => "user:erase",
            Self::HoldCapture => "hold:capture",
            Self::HoldVoid => "hold:void",
            Self::WalletLimits => "wallet:limits",
            Self::WebhookAdmin => "webhook:admin",
        }
    }

    /// Whether it moves money out of or into a user's wallet: deposit, withdraw, transfer,
    /// capture a hold.
    #[must_use]
    pub fn moves_money(self) -> bool {
        matches!(
            self,
            Self::WalletDeposit | Self::WalletWithdraw | Self::WalletTransfer | Self::HoldCapture
        )
    }

    /// Whether it administers: writes on other users' wallets, keys or accounts.
    #[must_use]
    pub fn administers(self) -> bool {
        matches!(
            self,
            Self::WalletWrite
                | Self::WalletFreeze
                | Self::WalletClose
                | Self::KeyRotate
                | Self::UserAdmin
                | Self::UserErase
                | Self::HoldVoid
                | Self::WalletLimits
                | Self::WebhookAdmin
        )
    }

    /// Parses a name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configuration error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RbacError {
    /// A permission name nobody knows.
    #[error("role {role:?}: unknown permission {permission:?}")]
    UnknownPermission {
        /// The role.
        role: String,
        /// The name.
        permission: String,
    },
    /// A role name that is not `[a-z0-9_-]{1,32}`.
    #[error("role names are 1-32 characters of [a-z0-9_-], got {0:?}")]
    BadRoleName(String),
    /// A role that both administers and moves money.
    #[error("role {role:?} holds {admin} and {money}: an administrator never moves users' money")]
    AdminMovesMoney {
        /// The role.
        role: String,
        /// One administrative permission it holds.
        admin: Permission,
        /// One money-moving permission it holds.
        money: Permission,
    },
    /// No role holds `user:admin`, so no one could assign a role.
    #[error("no role holds user:admin: no one could ever assign a role")]
    NoRoleAdministrator,
}

/// The default role of a service account that captures holds.
pub const PAYOUTS_ROLE: &str = "payouts";

/// Roles to permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rbac {
    roles: BTreeMap<String, BTreeSet<Permission>>,
}

impl Default for Rbac {
    /// Users move their own money; admins administer and never move users' money.
    fn default() -> Self {
        use Permission::*;
        let mut roles = BTreeMap::new();
        roles.insert(
            crate::accounts::NEW_ACCOUNT_ROLE.to_owned(),
            [
                WalletRead,
                WalletDeposit,
                WalletWithdraw,
                WalletTransfer,
                WalletManage,
            ]
            .into_iter()
            .collect(),
        );
        roles.insert(
            "admin".to_owned(),
            [
                WalletRead,
                WalletWrite,
                WalletFreeze,
                WalletClose,
                SystemMetrics,
                AuditRead,
                KeyRead,
                KeyRotate,
                UserAdmin,
                HoldVoid,
                WalletLimits,
                WebhookAdmin,
            ]
            .into_iter()
            .collect(),
        );
        // A payout service's account: it captures holds (held withdrawals and transfers alike)
        // and reads nothing else.
        roles.insert(PAYOUTS_ROLE.to_owned(), [HoldCapture].into_iter().collect());
        // Erasure is for good: a role of its own, which an administrator grants deliberately.
        roles.insert(
            PRIVACY_ROLE.to_owned(),
            [WalletRead, AuditRead, UserErase].into_iter().collect(),
        );
        Self { roles }
    }
}

fn valid_role(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl Rbac {
    /// From configuration: role name to permission names.
    ///
    /// # Errors
    /// [`RbacError`] for a bad role name, an unknown permission, a role that administers and
    /// moves money, or a table where no role holds `user:admin`.
    pub fn from_config<'a>(
        roles: impl IntoIterator<Item = (&'a str, Vec<&'a str>)>,
    ) -> Result<Self, RbacError> {
        let mut out = BTreeMap::new();
        for (role, permissions) in roles {
            if !valid_role(role) {
                return Err(RbacError::BadRoleName(role.to_owned()));
            }
            let mut set = BTreeSet::new();
            for p in permissions {
                set.insert(
                    Permission::parse(p).ok_or_else(|| RbacError::UnknownPermission {
                        role: role.to_owned(),
                        permission: p.to_owned(),
                    })?,
                );
            }
            let admin = set.iter().find(|p| p.administers());
            if let (Some(admin), Some(money)) = (admin, set.iter().find(|p| p.moves_money())) {
                return Err(RbacError::AdminMovesMoney {
                    role: role.to_owned(),
                    admin: *admin,
                    money: *money,
                });
            }
            out.insert(role.to_owned(), set);
        }
        let rbac = Self { roles: out };
        if rbac.roles_allowing(Permission::UserAdmin).is_empty() {
            return Err(RbacError::NoRoleAdministrator);
        }
        Ok(rbac)
    }

    /// The table as configuration writes it: role name to permission names.
    #[must_use]
    pub fn to_names(&self) -> BTreeMap<String, Vec<String>> {
        self.roles
            .iter()
            .map(|(role, set)| {
                (
                    role.clone(),
                    set.iter().map(|p| p.as_str().to_owned()).collect(),
                )
            })
            .collect()
    }

    /// Whether any of `roles` grants `permission`. Unknown roles grant nothing.
    #[must_use]
    pub fn allows<S: AsRef<str>>(&self, roles: &[S], permission: Permission) -> bool {
        roles.iter().any(|r| {
            self.roles
                .get(r.as_ref())
                .is_some_and(|set| set.contains(&permission))
        })
    }

    /// The permissions of `roles` together.
    #[must_use]
    pub fn permissions<S: AsRef<str>>(&self, roles: &[S]) -> BTreeSet<Permission> {
        roles
            .iter()
            .filter_map(|r| self.roles.get(r.as_ref()))
            .flatten()
            .copied()
            .collect()
    }

    /// The configured roles that grant `permission`, in name order.
    #[must_use]
    pub fn roles_allowing(&self, permission: Permission) -> Vec<String> {
        self.roles
            .iter()
            .filter(|(_, set)| set.contains(&permission))
            .map(|(role, _)| role.clone())
            .collect()
    }

    /// Whether `role` is configured.
    #[must_use]
    pub fn knows(&self, role: &str) -> bool {
        self.roles.contains_key(role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;

    /// Every default permission of every role, both ways.
    #[test]
    fn default_matrix() {
        let rbac = Rbac::default();
        let user = [
            WalletRead,
            WalletDeposit,
            WalletWithdraw,
            WalletTransfer,
            WalletManage,
        ];
        let admin = [
            WalletRead,
            WalletWrite,
            WalletFreeze,
            WalletClose,
            SystemMetrics,
            AuditRead,
            KeyRead,
            KeyRotate,
            UserAdmin,
            HoldVoid,
            WalletLimits,
            WebhookAdmin,
        ];
        for p in Permission::ALL {
            assert_eq!(rbac.allows(&["user"], *p), user.contains(p), "user {p}");
            assert_eq!(rbac.allows(&["admin"], *p), admin.contains(p), "admin {p}");
            assert_eq!(
                rbac.allows(&[PAYOUTS_ROLE], *p),
                *p == HoldCapture,
                "payouts {p}"
            );
            assert!(!rbac.allows(&["nobody"], *p), "unknown role {p}");
            assert!(!rbac.allows::<&str>(&[], *p), "no role {p}");
            assert_eq!(
                rbac.allows(&["user", "admin"], *p),
                user.contains(p) || admin.contains(p)
            );
        }
        for money in [WalletDeposit, WalletWithdraw, WalletTransfer, HoldCapture] {
            assert!(
                !rbac.allows(&["admin"], money),
                "admins move no user's money"
            );
        }
    }

    #[test]
    fn an_administrator_never_moves_money_and_someone_can_assign_roles() {
        let default = Rbac::default().to_names();
        let table = |extra: Option<(&'static str, Vec<&'static str>)>| {
            let mut t: Vec<(&str, Vec<&str>)> = default
                .iter()
                .map(|(r, ps)| (r.as_str(), ps.iter().map(String::as_str).collect()))
                .collect();
            t.extend(extra);
            Rbac::from_config(t)
        };
        assert_eq!(
            table(None),
            Ok(Rbac::default()),
            "the default table round-trips"
        );
        assert_eq!(
            table(Some(("ops", vec!["wallet:freeze", "wallet:transfer"]))),
            Err(RbacError::AdminMovesMoney {
                role: "ops".into(),
                admin: WalletFreeze,
                money: WalletTransfer
            })
        );
        assert!(table(Some(("support", vec!["wallet:read", "wallet:freeze"]))).is_ok());
        assert_eq!(
            Rbac::from_config([("user", vec!["wallet:read"]), ("ops", vec!["key:rotate"])]),
            Err(RbacError::NoRoleAdministrator)
        );
    }

    #[test]
    fn configuration_is_parsed_strictly() {
        let rbac = Rbac::from_config([
            ("auditor", vec!["audit:read", "wallet:read"]),
            ("root", vec!["user:admin"]),
        ])
        .unwrap();
        assert!(rbac.allows(&["auditor"], AuditRead));
        assert!(!rbac.allows(&["auditor"], WalletTransfer));
        assert!(!rbac.knows("user"), "configuration replaces the defaults");
        assert_eq!(
            Rbac::from_config([("auditor", vec!["audit:write"])]),
            Err(RbacError::UnknownPermission {
                role: "auditor".into(),
                permission: "audit:write".into()
            })
        );
        assert!(matches!(
            Rbac::from_config([("Admin!", vec!["user:admin"])]),
            Err(RbacError::BadRoleName(_))
        ));
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(*p));
        }
    }
}
