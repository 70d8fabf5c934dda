//! Roles (per organisation) and what each may do, as PRODUCT.md defines them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The role an API token (or user) holds within its organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including users and organisations.
    Owner,
    /// Everything but users.
    Admin,
    /// Streams, sources, destinations, keys and runs; public transformations only; no replication.
    Editor,
    /// Read only.
    Viewer,
    /// Only the event log, for feed consumers.
    EventViewer,
}

/// Something a request wants to do; each handler asks for exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read configuration, jobs, events and reports.
    Read,
    /// Follow the event log.
    ReadEventLog,
    /// Create, change or delete keys, sources, destinations and streams; run streams.
    WriteStreams,
    /// Create, change or delete private transformations and lookup tables.
    WriteTransformations,
    /// Replicate or abort jobs and events, create events directly.
    Replicate,
    /// Create and revoke API tokens.
    ManageTokens,
    /// Create, change or delete alert channels and rules.
    ManageAlerts,
    /// Manage users and organisations.
    ManageUsers,
    /// Read the audit log.
    ReadAudit,
    /// Decide where a key's secrets may be sent beyond what its system fixes: a custom
    /// `base_url` for Shopify or DEAR, a host off the vendor's domain, an `http` key holding
    /// secrets used with any `url`.
    DirectSecrets,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Owner,
        Role::Admin,
        Role::Editor,
        Role::Viewer,
        Role::EventViewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
            Role::EventViewer => "event_viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Ordering of privilege, used so nobody can mint a token above their own role.
    fn rank(self) -> u8 {
        match self {
            Role::Owner => 4,
            Role::Admin => 3,
            Role::Editor => 2,
            Role::Viewer => 1,
            Role::EventViewer => 0,
        }
    }

    /// The less privileged of two roles: a token acting for a user holds no more than the user
    /// does now, so demoting a user demotes their existing tokens too.
    pub fn lower(self, other: Role) -> Role {
        if other.rank() < self.rank() {
            other
        } else {
            self
        }
    }

    /// Whether a holder of `self` may hand out a token or user role `other`.
    pub fn can_grant(self, other: Role) -> bool {
        self.rank() >= other.rank() && self.allows(Permission::ManageTokens)
    }

    /// The single place where roles map to permissions.
    pub fn allows(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Owner => true,
            Role::Admin => !matches!(p, ManageUsers),
            Role::Editor => matches!(p, Read | ReadEventLog | WriteStreams),
            Role::Viewer => matches!(p, Read | ReadEventLog),
            Role::EventViewer => matches!(p, ReadEventLog),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_the_product_table() {
        assert!(Role::Owner.allows(Permission::ManageUsers));
        assert!(!Role::Admin.allows(Permission::ManageUsers));
        assert!(Role::Admin.allows(Permission::ManageTokens));
        assert!(Role::Admin.allows(Permission::ManageAlerts));
        assert!(!Role::Editor.allows(Permission::ManageAlerts));
        assert!(Role::Editor.allows(Permission::WriteStreams));
        assert!(!Role::Editor.allows(Permission::WriteTransformations));
        assert!(!Role::Editor.allows(Permission::Replicate));
        assert!(Role::Admin.allows(Permission::DirectSecrets));
        assert!(!Role::Editor.allows(Permission::DirectSecrets));
        assert!(!Role::Viewer.allows(Permission::WriteStreams));
        assert!(Role::Viewer.allows(Permission::Read));
        assert!(!Role::EventViewer.allows(Permission::Read));
        assert!(Role::EventViewer.allows(Permission::ReadEventLog));
    }

    #[test]
    fn nobody_grants_above_themselves() {
        assert!(Role::Owner.can_grant(Role::Owner));
        assert!(!Role::Admin.can_grant(Role::Owner));
        assert!(Role::Admin.can_grant(Role::Admin));
        assert!(!Role::Editor.can_grant(Role::Viewer));
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
    }

    #[test]
    fn lower_takes_the_less_privileged_role() {
        assert_eq!(Role::Admin.lower(Role::Viewer), Role::Viewer);
        assert_eq!(Role::Viewer.lower(Role::Admin), Role::Viewer);
        assert_eq!(Role::Owner.lower(Role::Owner), Role::Owner);
        assert_eq!(Role::Editor.lower(Role::EventViewer), Role::EventViewer);
    }
}
