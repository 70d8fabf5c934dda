//! `wharf user create`: makes a person from the command line (the first owner, before anyone
//! can sign in), with a password read from standard input or an invitation link to hand over.

use anyhow::{bail, Context};
use serde_json::json;
use uuid::Uuid;

use crate::audit::{audited, set_fields, Actor, Change};
use crate::config::Config;
use crate::domain::{Role, Timestamp};
use crate::store::{AuditSlot, User};

/// What to create.
pub struct NewPerson {
    pub email: String,
    pub name: Option<String>,
    pub role: String,
    /// The organisation by name; the only one when unset.
    pub organisation: Option<String>,
    /// The password; without one, an invitation link is made.
    pub password: Option<String>,
}

/// Creates the person; returns what to tell whoever ran the command.
pub async fn create(config: Config, new: NewPerson) -> anyhow::Result<String> {
    let state = crate::app::prepare(config).await?;
    let email = new.email.trim().to_lowercase();
    let at = email.find('@');
    if !at.is_some_and(|i| i > 0 && i < email.len() - 1) || email.contains(char::is_whitespace) {
        bail!("--email must be an e-mail address");
    }
    let role = Role::parse(&new.role).with_context(|| {
        format!(
            "--role must be one of owner, admin, editor, viewer, event_viewer, not `{}`",
            new.role
        )
    })?;
    let org = match &new.organisation {
        Some(name) => state.store.organisation_named(name, true).await?,
        None => {
            let all = state.store.organisation_names().await?;
            match all.as_slice() {
                [(id, _)] => *id,
                _ => bail!(
                    "there are several organisations ({}); choose one with --organisation",
                    all.iter()
                        .map(|(_, n)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
    };
    let hash = match &new.password {
        Some(password) => {
            if let Some(problem) = state.passwords.problem(password, &email) {
                bail!("the password {problem}");
            }
            Some(state.passwords.hash(password).map_err(anyhow::Error::msg)?)
        }
        None => None,
    };
    let now = Timestamp::now();
    let name = new
        .name
        .clone()
        .unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_string());
    let user = User {
        id: Uuid::now_v7(),
        org_id: org,
        email: email.clone(),
        name: name.clone(),
        role: role.as_str().to_string(),
        created_at: now,
        updated_at: now,
    };
    let link = hash
        .is_none()
        .then(|| super::new_link(now, org, user.id, "invite", state.config.auth.link_hours));
    let actor = Actor {
        kind: "user",
        id: user.id,
        name,
    };
    let entry = Change {
        org_id: org,
        actor: &actor,
        action: "user.create",
        object_type: "user",
        object_id: Some(user.id),
        changes: set_fields(&[
            ("email", json!(email)),
            ("role", json!(role.as_str())),
            ("via", json!("command line")),
        ]),
        ip: None,
        request_id: None,
    }
    .entry(now, state.config.auth.audit_value_chars);
    let store = audited(
        &state.store,
        &std::sync::Arc::new(AuditSlot::default()),
        entry,
    );
    store
        .create_user(&user, link.as_ref().map(|(l, _)| l), hash.as_deref())
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Duplicate(_) => {
                anyhow::anyhow!("a person with the e-mail address {email} exists already")
            }
            other => other.into(),
        })?;
    state.store.close().await;
    // Where people open the panel: the public address, or this server's own.
    let base = state
        .config
        .public_base_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", state.config.listen));
    Ok(match link {
        None => format!(
            "created {email} ({}); sign in at {}/ (the control panel) or POST /api/v1/session",
            role.as_str(),
            base.trim_end_matches('/')
        ),
        Some((link, token)) => format!(
            "created {email} ({}); they set their password with this one-time link (valid until {}):\n{}",
            role.as_str(),
            link.expires_at.0.to_rfc3339(),
            super::link_url(Some(&base), &token)
        ),
    })
}
