//! What customers may read, without a key: the state the public surfaces (status page,
//! Statuspage-compatible JSON, feeds, badges) are rendered from. Everything leaves here
//! through `domain::public`, which decides field by field what is public.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Service;
use super::history::incident_spans;
use crate::domain::history::{Affecting, StatusChange, start_of_last_days, uptime};
use crate::domain::page::PageToken;
use crate::domain::public::{
    PublicIncident, PublicIncidentPage, PublicMaintenance, PublicMaintenancePage, PublicMaintenanceUpdate,
    PublicPostmortem, PublicState, public_updates,
};
use crate::domain::query::IncidentFilter;
use crate::domain::{Component, Error, Incident, IncidentKey, IncidentRef, Result, Status};
use crate::store::MaintenanceFilter;

/// How many days (today included) the status page's uptime bars and history cover.
pub const HISTORY_DAYS: u32 = 90;
/// At least this many past incidents are kept however old (Statuspage's `incidents.json`
/// lists the 50 most recent).
const RECENT_INCIDENTS: u32 = 50;
/// At most this many incidents (or maintenances) of a kind are read for one state.
const MAX_INCIDENTS: u32 = 1000;

/// The statuses of past incidents customers see (merged ones are not: the incident they went
/// into is).
fn past_statuses() -> Vec<Status> {
    vec![Status::Resolved, Status::Closed]
}

impl Service {
    /// Reads everything the public surfaces show, as of now.
    pub async fn public_state(&self) -> Result<PublicState> {
        let now = crate::domain::now();
        let since = start_of_last_days(&self.time_zone, now, HISTORY_DAYS);
        let components = self.all_components().await?;
        let open = IncidentFilter { open: Some(true), ..Default::default() };
        let active = self.store.list_incidents(&open, None, MAX_INCIDENTS).await?;
        // Merged incidents are duplicates: the incident they went into tells their story.
        let window = IncidentFilter { statuses: past_statuses(), created_after: Some(since), ..Default::default() };
        let mut past = self.store.list_incidents(&window, None, MAX_INCIDENTS).await?;
        if past.len() < RECENT_INCIDENTS as usize {
            let closed = IncidentFilter { statuses: past_statuses(), ..Default::default() };
            for i in self.store.list_incidents(&closed, None, RECENT_INCIDENTS).await? {
                if !past.iter().any(|p| p.id == i.id) {
                    past.push(i);
                }
            }
        }
        // Updates report the component changes their incident caused, so the changes are read
        // from the earliest incident shown (uptime needs only the window's).
        let first_incident = active.iter().chain(&past).map(|i| i.created_at).min().unwrap_or(since);
        let changes = self.store.status_changes_since(None, first_incident.min(since)).await?;
        // A component shown changed when its effective status last did, too.
        let mut components = components;
        for c in &mut components {
            if let Some(last) = changes.iter().filter(|ch| ch.component_id == c.id).map(|ch| ch.changed_at).max() {
                c.updated_at = c.updated_at.max(last);
            }
        }
        let spans = incident_spans(active.iter().chain(&past));
        // Which components each incident affects, looked up once per span (an alert storm has
        // hundreds of incidents, each span was a scan of them all).
        let affected: HashMap<Uuid, &[crate::domain::AffectedComponent]> =
            active.iter().chain(&past).map(|i| (i.id, i.affected_components.as_slice())).collect();
        let uptime = components
            .iter()
            .map(|c| {
                let mine: Vec<_> =
                    changes.iter().filter(|ch| ch.component_id == c.id && ch.changed_at >= since).cloned().collect();
                let affecting: Vec<Affecting> = spans
                    .iter()
                    .filter(|s| affected.get(&s.incident_id).is_some_and(|a| a.iter().any(|a| a.component_id == c.id)))
                    .copied()
                    .collect();
                uptime(
                    c.id,
                    c.created_at,
                    c.effective_status,
                    &mine,
                    &affecting,
                    since,
                    now,
                    &self.time_zone,
                    self.time_zone.name(),
                )
            })
            .collect();
        let maintenances = self.public_maintenances().await?;
        let updated_at = components
            .iter()
            .map(|c| c.updated_at)
            .chain(active.iter().chain(&past).map(|i| i.updated_at))
            .chain(changes.iter().map(|c| c.changed_at))
            .chain(maintenances.iter().map(|m| m.maintenance.updated_at))
            .max()
            .unwrap_or(now);
        Ok(PublicState {
            at: now,
            since,
            updated_at,
            components,
            active: self.pages(&active, &changes).await?,
            past: self.pages(&past, &changes).await?,
            uptime,
            maintenances,
            time_zone: self.time_zone,
        })
    }

    /// The maintenance customers see: every one not yet over, soonest first, then the most
    /// recent completed or cancelled ones; each with its timeline.
    async fn public_maintenances(&self) -> Result<Vec<PublicMaintenancePage>> {
        use crate::domain::maintenance::MaintenanceStatus::*;
        let pending = MaintenanceFilter { statuses: vec![Scheduled, InProgress, Verifying] };
        let mut maintenances = self.store.list_maintenances(&pending, None, MAX_INCIDENTS).await?;
        maintenances.reverse();
        let over = MaintenanceFilter { statuses: vec![Completed, Cancelled] };
        maintenances.extend(self.store.list_maintenances(&over, None, RECENT_INCIDENTS).await?);
        let ids: Vec<Uuid> = maintenances.iter().map(|m| m.id).collect();
        let mut timelines: HashMap<Uuid, Vec<PublicMaintenanceUpdate>> = HashMap::new();
        for u in self.store.list_maintenance_timelines(&ids).await? {
            timelines.entry(u.maintenance_id).or_default().push(PublicMaintenanceUpdate::from(&u));
        }
        Ok(maintenances
            .iter()
            .map(|m| {
                let mut updates = timelines.remove(&m.id).unwrap_or_default();
                updates.reverse();
                PublicMaintenancePage { maintenance: PublicMaintenance::from(m), updates }
            })
            .collect())
    }

    /// One incident as customers may read it, with its public updates: for pages of incidents
    /// older than the public state keeps.
    pub async fn public_incident(&self, key: IncidentKey) -> Result<PublicIncidentPage> {
        let incident = self
            .store
            .get_incident(key)
            .await?
            .ok_or_else(|| Error::NotFound { resource: "incident", id: key.to_string() })?;
        let mut pages = self.pages(std::slice::from_ref(&incident), &[]).await?;
        Ok(pages.pop().expect("one page per incident"))
    }

    /// Where a merged incident went (following merges of merges): the reference of the incident
    /// that carries its story, or `None` when `key` names no merged incident.
    pub async fn public_merge_target(&self, key: IncidentKey) -> Result<Option<IncidentRef>> {
        let mut key = key;
        let mut target = None;
        // A merge never goes into a merged incident, but the target may be merged later.
        for _ in 0..16 {
            match self.store.get_incident(key).await? {
                Some(Incident { status: Status::Merged, merged_into: Some(next), .. }) => key = IncidentKey::Id(next),
                Some(i) if target.is_some() => return Ok(Some(i.reference)),
                _ => return Ok(None),
            }
            target = Some(key);
        }
        Ok(None)
    }

    /// The resolved incidents declared in `[from, to)`, newest first, for the history of an
    /// older month.
    pub async fn public_incidents_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<PublicIncidentPage>> {
        let statuses = Status::ALL.iter().copied().filter(|s| *s != Status::Merged).collect();
        let filter =
            IncidentFilter { statuses, created_after: Some(from), created_before: Some(to), ..Default::default() };
        let incidents = self.store.list_incidents(&filter, None, MAX_INCIDENTS).await?;
        self.pages(&incidents, &[]).await
    }

    /// The incidents as customers see them, with their public updates, each update with the
    /// component changes of `changes` it reports (the on-demand pages pass none: pages do not
    /// show them, only the JSON of the snapshot does).
    async fn pages(&self, incidents: &[Incident], changes: &[StatusChange]) -> Result<Vec<PublicIncidentPage>> {
        let ids: Vec<Uuid> = incidents.iter().map(|i| i.id).collect();
        let mut timelines: HashMap<Uuid, Vec<_>> = HashMap::new();
        for entry in self.store.list_timelines(&ids).await? {
            timelines.entry(entry.incident_id).or_default().push(entry);
        }
        let mut postmortems: HashMap<Uuid, PublicPostmortem> = HashMap::new();
        for p in self.store.published_postmortems(&ids).await? {
            if let Some(public) = PublicPostmortem::of(&p) {
                postmortems.insert(p.incident_id, public);
            }
        }
        Ok(incidents
            .iter()
            .map(|i| PublicIncidentPage {
                incident: PublicIncident::from(i),
                updates: public_updates(i, timelines.get(&i.id).map(Vec::as_slice).unwrap_or_default(), changes),
                postmortem: postmortems.remove(&i.id),
            })
            .collect())
    }

    /// Every component, in status-page order.
    /// Every component's id and name, in status-page order.
    pub(super) async fn component_names(&self) -> Result<Vec<(Uuid, String)>> {
        Ok(self.all_components().await?.into_iter().map(|c| (c.id, c.name)).collect())
    }

    pub(super) async fn all_components(&self) -> Result<Vec<Component>> {
        let mut all = Vec::new();
        let mut after: Option<PageToken> = None;
        loop {
            let page = self.store.list_components(None, after.as_ref(), 500).await?;
            let full = page.len() == 500;
            after = page.last().map(|c| PageToken::Ordered {
                group_key: c.group_key(),
                position: c.position,
                name_key: c.name_key(),
                id: c.id,
            });
            all.extend(page);
            if !full {
                return Ok(all);
            }
        }
    }
}
