//! Integration use cases: create (the secret shown once), read, list, edit, rotate the
//! secret, delete (scope admin), the alerts received, and identifying a sender by its secret.

use serde_json::json;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{Created, Service};
use crate::domain::access::hash_secret;
use crate::domain::alert::Alert;
use crate::domain::integration::{Integration, IntegrationKind, IntegrationPatch, NewIntegration};
use crate::domain::page::{Page, PageToken};
use crate::domain::validate::Violations;
use crate::domain::version::check_etag;
use crate::domain::{AuditEvent, Caller, Error, IncidentKey, PageRequest, Permission, Result, Scope};
use crate::store::{AlertsOf, Transaction};

/// An integration with its secret: only when it is created or its secret rotated.
#[derive(Debug, Clone)]
pub struct IntegrationWithSecret {
    pub integration: Integration,
    pub secret: String,
}

fn not_found(id: Uuid) -> Error {
    Error::NotFound { resource: "integration", id: id.to_string() }
}

/// Refuses rules naming components that do not exist.
async fn check_rule_components(tx: &mut dyn Transaction, integration: &Integration) -> Result<()> {
    let mut v = Violations::new();
    let mut named = Vec::new();
    for (i, r) in integration.rules.iter().enumerate() {
        for (j, c) in r.components.iter().enumerate() {
            named.push((format!("rules[{i}].components[{j}]"), *c));
        }
    }
    super::components::check_components_exist(tx, &mut v, named).await?;
    v.finish()
}

/// What an integration acts as: its name as the author of what it changes, allowed to
/// write incidents, rate-limited on its own.
pub(super) fn integration_caller(integration: &Integration) -> Caller {
    Caller {
        key_id: Some(integration.id),
        name: format!("integration {}", integration.name),
        scopes: vec![Scope::IncidentsWrite],
    }
}

/// The secret in an `Authorization` header: `Bearer <secret>`, or HTTP Basic with the
/// secret as the password (or as the user name, with no password).
fn presented_secret(authorization: Option<&str>) -> Option<String> {
    use base64::Engine;
    let header = authorization?.trim();
    let (scheme, value) = header.split_once(' ')?;
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(value.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(value).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':').unwrap_or((&text, ""));
        return Some(if password.is_empty() { user.to_string() } else { password.to_string() });
    }
    None
}

impl Service {
    pub async fn create_integration(
        &self,
        caller: &Caller,
        input: NewIntegration,
    ) -> Result<Created<IntegrationWithSecret>> {
        caller.require(Permission::Admin)?;
        let now = crate::domain::now();
        let (integration, secret) = input.validate(now)?;
        let mut tx = self.store.begin().await?;
        check_rule_components(tx.as_mut(), &integration).await?;
        tx.insert_integration(&integration, &secret.hash).await?;
        let details = json!({"name": integration.name, "kind": integration.kind});
        let audit = AuditEvent::new(caller, "integration.create", "integration", integration.id, details, now);
        tx.insert_audit_event(&audit).await?;
        tx.commit().await?;
        tracing::info!(integration = %integration.id, kind = %integration.kind, "integration created");
        Ok(Created { value: IntegrationWithSecret { integration, secret: secret.secret }, replayed: false })
    }

    pub async fn get_integration(&self, caller: &Caller, id: Uuid) -> Result<Integration> {
        caller.require(Permission::Admin)?;
        self.store.get_integration(id).await?.ok_or_else(|| not_found(id))
    }

    pub async fn list_integrations(&self, caller: &Caller, page: PageRequest) -> Result<Page<Integration>> {
        caller.require(Permission::Admin)?;
        let rows = self.store.list_integrations(page.after.as_ref(), page.size + 1).await?;
        Ok(Page::from_rows(rows, page.size, |i| PageToken::Time { at: i.created_at, id: i.id }))
    }

    pub async fn update_integration(
        &self,
        caller: &Caller,
        id: Uuid,
        patch: IntegrationPatch,
        if_match: Option<&str>,
    ) -> Result<Integration> {
        caller.require(Permission::Admin)?;
        let now = crate::domain::now();
        let mut tx = self.store.begin().await?;
        let mut integration = tx.lock_integration(id).await?.ok_or_else(|| not_found(id))?;
        check_etag("integration", if_match, integration.version)?;
        let rules_changed = patch.rules.is_some();
        if !integration.apply(patch, now)? {
            return Ok(integration);
        }
        if rules_changed {
            check_rule_components(tx.as_mut(), &integration).await?;
        }
        tx.update_integration(&integration, None).await?;
        let audit = AuditEvent::new(caller, "integration.update", "integration", id, json!({}), now);
        tx.insert_audit_event(&audit).await?;
        tx.commit().await?;
        Ok(integration)
    }

    /// Replaces the secret: the old one stops working at once.
    pub async fn rotate_integration_secret(&self, caller: &Caller, id: Uuid) -> Result<IntegrationWithSecret> {
        caller.require(Permission::Admin)?;
        let now = crate::domain::now();
        let mut tx = self.store.begin().await?;
        let mut integration = tx.lock_integration(id).await?.ok_or_else(|| not_found(id))?;
        let secret = integration.rotate(now);
        tx.update_integration(&integration, Some(&secret.hash)).await?;
        let audit = AuditEvent::new(caller, "integration.rotate_secret", "integration", id, json!({}), now);
        tx.insert_audit_event(&audit).await?;
        tx.commit().await?;
        Ok(IntegrationWithSecret { integration, secret: secret.secret })
    }

    /// Deletes the integration; the alerts it received stay on their incidents.
    pub async fn delete_integration(&self, caller: &Caller, id: Uuid, if_match: Option<&str>) -> Result<()> {
        caller.require(Permission::Admin)?;
        let mut tx = self.store.begin().await?;
        let integration = tx.lock_integration(id).await?.ok_or_else(|| not_found(id))?;
        check_etag("integration", if_match, integration.version)?;
        tx.delete_integration(id).await?;
        let details = json!({"name": integration.name, "kind": integration.kind});
        let audit = AuditEvent::new(caller, "integration.delete", "integration", id, details, crate::domain::now());
        tx.insert_audit_event(&audit).await?;
        tx.commit().await
    }

    /// The alerts an integration received, newest first.
    pub async fn list_integration_alerts(&self, caller: &Caller, id: Uuid, page: PageRequest) -> Result<Page<Alert>> {
        caller.require(Permission::Admin)?;
        self.store.get_integration(id).await?.ok_or_else(|| not_found(id))?;
        self.alerts_page(AlertsOf::Integration(id), page).await
    }

    /// The alerts that opened or joined an incident, newest first.
    pub async fn list_incident_alerts(
        &self,
        caller: &Caller,
        key: IncidentKey,
        page: PageRequest,
    ) -> Result<Page<Alert>> {
        let incident = self.get_incident(caller, key).await?;
        self.alerts_page(AlertsOf::Incident(incident.id), page).await
    }

    async fn alerts_page(&self, of: AlertsOf, page: PageRequest) -> Result<Page<Alert>> {
        let rows = self.store.list_alerts(of, page.after.as_ref(), page.size + 1).await?;
        Ok(Page::from_rows(rows, page.size, |a| PageToken::Time { at: a.received_at, id: a.id }))
    }

    /// The integration `id` if the `Authorization` header carries its secret and it is of
    /// `kind` (a Grafana integration takes Grafana's payload, and so on); else
    /// unauthenticated, with the same answer for an unknown id as for a wrong secret.
    pub async fn authenticate_integration(
        &self,
        id: Uuid,
        kind: IntegrationKind,
        authorization: Option<&str>,
    ) -> Result<Integration> {
        let unauthenticated = || {
            Error::Unauthenticated(
                "send the integration's secret as `Authorization: Bearer <secret>` (or as the Basic password)".into(),
            )
        };
        let secret = presented_secret(authorization).ok_or_else(unauthenticated)?;
        let (integration, hash) = self.store.get_integration_secret(id).await?.ok_or_else(unauthenticated)?;
        if !bool::from(hash_secret(&secret).ct_eq(&hash)) {
            return Err(unauthenticated());
        }
        if integration.kind != kind {
            return Err(Error::NotFound {
                resource: "receiver",
                id: format!(
                    "{kind} for integration {id}, which is of kind {}: post to {}",
                    integration.kind,
                    integration.receiver_path()
                ),
            });
        }
        self.authenticator.admit(&integration_caller(&integration))?;
        Ok(integration)
    }

    /// The PagerDuty Events API v2 integration whose secret is `routing_key`, rate-limited.
    pub async fn integration_for_routing_key(&self, routing_key: &str) -> Result<Option<Integration>> {
        let found = self.store.find_integration_by_secret(&hash_secret(routing_key)).await?;
        let Some(integration) = found.filter(|i| i.kind == IntegrationKind::PagerdutyEventsV2) else {
            return Ok(None);
        };
        self.authenticator.admit(&integration_caller(&integration))?;
        Ok(Some(integration))
    }
}
