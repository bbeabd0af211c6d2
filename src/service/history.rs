//! Component status history and uptime, and the one-time replay of the history recorded
//! before it was kept.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::Service;
use crate::domain::history::{Affecting, Imposed, StatusChange, Uptime, replay, uptime};
use crate::domain::page::{Page, PageToken};
use crate::domain::query::IncidentFilter;
use crate::domain::validate::Violations;
use crate::domain::{Caller, Error, Incident, PageRequest, Permission, Result};
use crate::store::{DynStore, Imposition};

/// The window an uptime request covers when it names none.
pub const DEFAULT_UPTIME_WINDOW: Duration = Duration::days(90);
/// The longest window an uptime request may cover.
pub const MAX_UPTIME_WINDOW: Duration = Duration::days(366);
/// How many incidents an uptime window lists, at most.
const UPTIME_INCIDENTS: u32 = 500;

impl Service {
    /// A component's status changes, newest first.
    pub async fn list_component_history(
        &self,
        caller: &Caller,
        id: Uuid,
        page: PageRequest,
    ) -> Result<Page<StatusChange>> {
        self.get_component(caller, id).await?;
        let rows = self.store.list_status_changes(id, page.after.as_ref(), page.size + 1).await?;
        Ok(Page::from_rows(rows, page.size, |c| PageToken::Time { at: c.changed_at, id: c.id }))
    }

    /// A component's uptime over `[from, to)` (the last 90 days by default), and day by day in
    /// the status page's time zone. `to` in the future means now.
    pub async fn component_uptime(
        &self,
        caller: &Caller,
        id: Uuid,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Uptime> {
        caller.require(Permission::ReadComponents)?;
        let now = crate::domain::now();
        let to = to.map_or(now, |t| t.min(now));
        let from = from.unwrap_or(to - DEFAULT_UPTIME_WINDOW);
        let mut v = Violations::new();
        if from >= to {
            v.add("from", "must be before to (and before now)");
        } else if to - from > MAX_UPTIME_WINDOW {
            v.add("from", format!("the window may span at most {} days", MAX_UPTIME_WINDOW.num_days()));
        }
        v.finish()?;
        let component = self.get_component(caller, id).await?;
        let changes = self.store.status_changes_since(Some(id), from).await?;
        let filter = IncidentFilter {
            component_id: Some(id),
            created_before: Some(to),
            created_after: Some(from - DEFAULT_UPTIME_WINDOW),
            ..Default::default()
        };
        let incidents = self.store.list_incidents(&filter, None, UPTIME_INCIDENTS).await?;
        Ok(uptime(
            id,
            component.created_at,
            component.effective_status,
            &changes,
            &incident_spans(&incidents),
            from,
            to,
            &self.time_zone,
            self.time_zone.name(),
        ))
    }
}

/// When each incident affected its components: from its declaration until it was resolved.
pub(crate) fn incident_spans<'a>(incidents: impl IntoIterator<Item = &'a Incident>) -> Vec<Affecting> {
    incidents
        .into_iter()
        .map(|i| {
            let until = if i.is_open() { None } else { Some(i.resolved_at.or(i.closed_at).unwrap_or(i.updated_at)) };
            Affecting { incident_id: i.id, from: i.created_at, until }
        })
        .collect()
}

/// Replays the impositions recorded before status history was kept, once per database (the
/// migration marks it due; replicas migrating together do it once). Returns how many changes
/// it recorded.
pub async fn backfill_component_history(store: &DynStore) -> Result<usize> {
    let mut tx = store.begin().await?;
    if !tx.claim_history_backfill().await? {
        tx.commit().await?;
        return Ok(0);
    }
    let mut by_component: BTreeMap<Uuid, Vec<Imposition>> = BTreeMap::new();
    for imposition in tx.impositions().await? {
        by_component.entry(imposition.component_id).or_default().push(imposition);
    }
    let mut changes = Vec::new();
    for (component_id, impositions) in by_component {
        let manual = impositions.first().map(|i| i.manual).ok_or_else(|| Error::Internal("no imposition".into()))?;
        let imposed: Vec<Imposed> = impositions.iter().map(|i| i.imposed).collect();
        changes.extend(replay(component_id, manual, &imposed));
    }
    tx.insert_status_changes(&changes).await?;
    tx.commit().await?;
    if !changes.is_empty() {
        tracing::info!(changes = changes.len(), "recorded the component status history of earlier incidents");
    }
    Ok(changes.len())
}
