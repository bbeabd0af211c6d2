//! The Statuspage-compatible public JSON (Atlassian Statuspage's public v2 API): the same
//! paths, field names, nesting and values, so existing clients and widgets work unchanged.
//!
//! How ours map to theirs: incident statuses `investigating`, `identified`, `monitoring` and
//! `resolved` are theirs (our `closed` reads `resolved`); impacts are the same four;
//! `monitoring_at` is when the incident first reached monitoring; an incident's `components`
//! are the components it affects; a component group (our `group` text) is a component with
//! `group: true` listing its members; `shortlink` is the incident's page on our status page.
//! Scheduled maintenances carry Statuspage's statuses (`scheduled`, `in_progress`,
//! `verifying`, `completed`), `impact: "maintenance"` and Statuspage's default texts for
//! updates posted without one; a cancelled maintenance is in none of the lists (Statuspage has
//! no such status: its clients would not know the value). Each incident also carries
//! an `incidentd` object with what Statuspage has no field for (reference, ETA, workaround,
//! the rounded affected-customer estimate).

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::PublicSettings;
use crate::domain::maintenance::MaintenanceStatus;
use crate::domain::public::{PublicIncidentPage, PublicMaintenancePage, PublicState, PublicUpdate};
use crate::domain::{Component, ComponentStatus, Impact, Status};

#[derive(Serialize)]
pub struct Page<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub url: &'a str,
    pub time_zone: &'a str,
    pub updated_at: String,
}

#[derive(Serialize, Clone)]
pub struct StatusComponent {
    pub id: String,
    pub name: String,
    pub status: &'static str,
    pub created_at: String,
    pub updated_at: String,
    pub position: i32,
    pub description: Option<String>,
    pub showcase: bool,
    pub start_date: Option<String>,
    pub group_id: Option<String>,
    pub page_id: String,
    pub group: bool,
    pub only_show_if_degraded: bool,
    /// Only on groups: their members' ids.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<String>>,
}

#[derive(Serialize)]
pub struct Indicator {
    pub indicator: &'static str,
    pub description: &'static str,
}

#[derive(Serialize)]
struct IncidentUpdate {
    id: String,
    status: &'static str,
    body: String,
    incident_id: String,
    created_at: String,
    updated_at: String,
    display_at: String,
    /// The component status changes this update reports; `null` when none.
    affected_components: Option<Vec<AffectedComponent>>,
    deliver_notifications: bool,
    custom_tweet: Option<String>,
    tweet_id: Option<String>,
}

#[derive(Serialize)]
struct AffectedComponent {
    code: String,
    /// "Group - Component" for a grouped component, as Statuspage writes it.
    name: String,
    old_status: &'static str,
    new_status: &'static str,
}

#[derive(Serialize)]
struct StatusIncident {
    id: String,
    name: String,
    status: &'static str,
    created_at: String,
    updated_at: String,
    monitoring_at: Option<String>,
    resolved_at: Option<String>,
    impact: &'static str,
    shortlink: String,
    started_at: String,
    page_id: String,
    incident_updates: Vec<IncidentUpdate>,
    components: Vec<StatusComponent>,
    /// The published postmortem's public summary (Statuspage's incident keys).
    postmortem_body: Option<String>,
    postmortem_published_at: Option<String>,
    /// What Statuspage has no field for.
    incidentd: Extension,
}

#[derive(Serialize)]
struct ScheduledMaintenance {
    id: String,
    name: String,
    status: &'static str,
    created_at: String,
    updated_at: String,
    monitoring_at: Option<String>,
    resolved_at: Option<String>,
    impact: &'static str,
    shortlink: String,
    started_at: String,
    page_id: String,
    incident_updates: Vec<IncidentUpdate>,
    components: Vec<StatusComponent>,
    scheduled_for: String,
    scheduled_until: String,
}

/// Which maintenances a document lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaintenanceList {
    /// The 50 most recent (any status but cancelled), latest window first.
    All,
    /// Not started yet, soonest first.
    Upcoming,
    /// In progress or verifying, soonest first.
    Active,
    /// Upcoming or under way (the summary's), soonest first.
    Current,
}

#[derive(Serialize)]
struct Extension {
    reference: String,
    summary: String,
    eta: Option<String>,
    affected_customers_estimate: Option<i64>,
    workaround: Workaround,
    page_url: String,
}

#[derive(Serialize)]
struct Workaround {
    availability: &'static str,
    text: Option<String>,
}

/// Renders the documents of one state.
pub struct Documents<'a> {
    settings: &'a PublicSettings,
    state: &'a PublicState,
    components: Vec<StatusComponent>,
}

impl<'a> Documents<'a> {
    pub fn new(settings: &'a PublicSettings, state: &'a PublicState) -> Self {
        let mut docs = Documents { settings, state, components: Vec::new() };
        docs.components = docs.components();
        docs
    }

    /// Statuspage's timestamp: milliseconds, in the page's time zone (`Z` for UTC).
    fn time(&self, t: DateTime<Utc>) -> String {
        time(t, self.state.time_zone)
    }

    fn page(&self) -> Page<'_> {
        Page {
            id: &self.settings.page_id,
            name: &self.settings.name,
            url: &self.settings.status_url,
            time_zone: self.state.time_zone.name(),
            updated_at: self.time(self.state.updated_at),
        }
    }

    fn component(&self, c: &Component, group_id: Option<String>) -> StatusComponent {
        StatusComponent {
            id: c.id.to_string(),
            name: c.name.clone(),
            status: c.effective_status.as_str(),
            created_at: self.time(c.created_at),
            updated_at: self.time(c.updated_at),
            position: c.position,
            description: (!c.description.is_empty()).then(|| c.description.clone()),
            showcase: true,
            start_date: Some(c.created_at.with_timezone(&self.state.time_zone).date_naive().to_string()),
            group_id,
            page_id: self.settings.page_id.clone(),
            group: false,
            only_show_if_degraded: false,
            components: None,
        }
    }

    /// Every component, groups first within their position (as Statuspage lists them): a
    /// group is a component of its own with `group: true`, its status the worst of its members.
    fn components(&self) -> Vec<StatusComponent> {
        let mut out: Vec<StatusComponent> = Vec::new();
        let mut group_position = 0;
        for c in &self.state.components {
            let Some(group) = &c.group else {
                out.push(self.component(c, None));
                continue;
            };
            let gid = group_id(&self.settings.page_id, &c.group_key());
            if !out.iter().any(|o| o.id == gid) {
                group_position += 1;
                let members: Vec<&Component> =
                    self.state.components.iter().filter(|m| m.group_key() == c.group_key()).collect();
                let worst = members.iter().map(|m| m.effective_status).max_by_key(|s| s.rank());
                out.push(StatusComponent {
                    id: gid.clone(),
                    name: group.clone(),
                    status: worst.unwrap_or(ComponentStatus::Operational).as_str(),
                    created_at: self.time(members.iter().map(|m| m.created_at).min().unwrap_or(c.created_at)),
                    updated_at: self.time(members.iter().map(|m| m.updated_at).max().unwrap_or(c.updated_at)),
                    position: group_position,
                    description: None,
                    showcase: false,
                    start_date: None,
                    group_id: None,
                    page_id: self.settings.page_id.clone(),
                    group: true,
                    only_show_if_degraded: false,
                    components: Some(members.iter().map(|m| m.id.to_string()).collect()),
                });
            }
            out.push(self.component(c, Some(gid)));
        }
        out
    }

    fn update(&self, u: &PublicUpdate) -> IncidentUpdate {
        IncidentUpdate {
            id: u.id.to_string(),
            status: incident_status(u.status),
            body: u.body.clone(),
            incident_id: u.incident_id.to_string(),
            created_at: self.time(u.created_at),
            updated_at: self.time(u.created_at),
            display_at: self.time(u.created_at),
            affected_components: (!u.component_changes.is_empty()).then(|| {
                u.component_changes
                    .iter()
                    .filter_map(|m| {
                        let c = self.state.components.iter().find(|c| c.id == m.component_id)?;
                        Some(AffectedComponent {
                            code: c.id.to_string(),
                            name: match &c.group {
                                Some(group) => format!("{group} - {}", c.name),
                                None => c.name.clone(),
                            },
                            old_status: m.from.as_str(),
                            new_status: m.to.as_str(),
                        })
                    })
                    .collect()
            }),
            deliver_notifications: true,
            custom_tweet: None,
            tweet_id: None,
        }
    }

    fn maintenance(&self, page: &PublicMaintenancePage) -> ScheduledMaintenance {
        let m = &page.maintenance;
        let id = m.id.to_string();
        let status = m.status.as_str();
        let updates = page
            .updates
            .iter()
            .map(|u| {
                let body = if u.body.trim().is_empty() { default_text(u.status) } else { u.body.clone() };
                IncidentUpdate {
                    id: u.id.to_string(),
                    status: u.status.as_str(),
                    body,
                    incident_id: id.clone(),
                    created_at: self.time(u.created_at),
                    updated_at: self.time(u.created_at),
                    display_at: self.time(u.created_at),
                    affected_components: None,
                    deliver_notifications: true,
                    custom_tweet: None,
                    tweet_id: None,
                }
            })
            .collect();
        ScheduledMaintenance {
            name: m.title.clone(),
            status,
            created_at: self.time(m.created_at),
            updated_at: self.time(m.updated_at),
            monitoring_at: None,
            resolved_at: m.completed_at.map(|t| self.time(t)),
            impact: "maintenance",
            shortlink: format!("{}#maintenance-{id}", self.settings.status_url),
            started_at: self.time(m.started_at.unwrap_or(m.created_at)),
            page_id: self.settings.page_id.clone(),
            incident_updates: updates,
            components: m
                .components
                .iter()
                .filter_map(|c| self.components.iter().find(|s| s.id == c.to_string()).cloned())
                .collect(),
            scheduled_for: self.time(m.scheduled_for),
            scheduled_until: self.time(m.scheduled_until),
            id,
        }
    }

    fn maintenances(&self, list: MaintenanceList) -> Vec<ScheduledMaintenance> {
        let wanted = |s: MaintenanceStatus| match list {
            MaintenanceList::All => s != MaintenanceStatus::Cancelled,
            MaintenanceList::Upcoming => s == MaintenanceStatus::Scheduled,
            MaintenanceList::Active => s.is_active(),
            MaintenanceList::Current => s == MaintenanceStatus::Scheduled || s.is_active(),
        };
        let mut pages: Vec<&PublicMaintenancePage> =
            self.state.maintenances.iter().filter(|p| wanted(p.maintenance.status)).collect();
        if list == MaintenanceList::All {
            pages.sort_by_key(|p| std::cmp::Reverse((p.maintenance.scheduled_for, p.maintenance.id)));
            pages.truncate(50);
        } else {
            pages.sort_by_key(|p| (p.maintenance.scheduled_for, p.maintenance.id));
        }
        pages.into_iter().map(|p| self.maintenance(p)).collect()
    }

    fn incident(&self, page: &PublicIncidentPage) -> StatusIncident {
        let i = &page.incident;
        let affected: Vec<StatusComponent> = i
            .affected_components
            .iter()
            .filter_map(|a| self.components.iter().find(|c| c.id == a.component_id.to_string()).cloned())
            .collect();
        let url = self.settings.incident_url(&i.reference.to_string());
        StatusIncident {
            id: i.id.to_string(),
            name: i.title.clone(),
            // Statuspage's incidents read `postmortem` once one is published.
            status: if page.postmortem.is_some() && !i.status.is_open() {
                "postmortem"
            } else {
                incident_status(i.status)
            },
            created_at: self.time(i.created_at),
            updated_at: self.time(i.updated_at),
            monitoring_at: i.mitigated_at.map(|t| self.time(t)),
            resolved_at: i.resolved_at.or(i.closed_at).filter(|_| !i.status.is_open()).map(|t| self.time(t)),
            impact: impact(i.impact),
            shortlink: url.clone(),
            started_at: self.time(i.started_at),
            page_id: self.settings.page_id.clone(),
            incident_updates: page.updates.iter().map(|u| self.update(u)).collect(),
            components: affected,
            postmortem_body: page.postmortem.as_ref().map(|p| p.summary.clone()),
            postmortem_published_at: page.postmortem.as_ref().map(|p| self.time(p.published_at)),
            incidentd: Extension {
                reference: i.reference.to_string(),
                summary: i.summary.clone(),
                eta: i.eta.map(|t| self.time(t)),
                affected_customers_estimate: i.affected_customers_estimate,
                workaround: Workaround {
                    availability: i.workaround.availability.as_str(),
                    text: i.workaround.text.clone(),
                },
                page_url: url,
            },
        }
    }

    /// The overall indicator: the worst of the components' statuses and the open incidents'
    /// impacts.
    pub fn status(&self) -> Indicator {
        indicator(self.state)
    }

    pub fn summary(&self) -> impl Serialize + '_ {
        Summary {
            page: self.page(),
            components: &self.components,
            incidents: self.state.active.iter().map(|p| self.incident(p)).collect(),
            scheduled_maintenances: self.maintenances(MaintenanceList::Current),
            status: self.status(),
        }
    }

    pub fn status_doc(&self) -> impl Serialize + '_ {
        StatusDoc { page: self.page(), status: self.status() }
    }

    pub fn components_doc(&self) -> impl Serialize + '_ {
        ComponentsDoc { page: self.page(), components: &self.components }
    }

    /// The 50 most recent incidents, whatever their status.
    pub fn incidents_doc(&self) -> impl Serialize + '_ {
        let mut all: Vec<&PublicIncidentPage> = self.state.active.iter().chain(&self.state.past).collect();
        all.sort_by_key(|p| std::cmp::Reverse(p.incident.created_at));
        IncidentsDoc { page: self.page(), incidents: all.into_iter().take(50).map(|p| self.incident(p)).collect() }
    }

    pub fn unresolved_doc(&self) -> impl Serialize + '_ {
        IncidentsDoc { page: self.page(), incidents: self.state.active.iter().map(|p| self.incident(p)).collect() }
    }

    pub fn maintenances_doc(&self, list: MaintenanceList) -> impl Serialize + '_ {
        MaintenancesDoc { page: self.page(), scheduled_maintenances: self.maintenances(list) }
    }
}

// The documents, their keys in Statuspage's order.

#[derive(Serialize)]
struct Summary<'a> {
    page: Page<'a>,
    components: &'a [StatusComponent],
    incidents: Vec<StatusIncident>,
    scheduled_maintenances: Vec<ScheduledMaintenance>,
    status: Indicator,
}

#[derive(Serialize)]
struct StatusDoc<'a> {
    page: Page<'a>,
    status: Indicator,
}

#[derive(Serialize)]
struct ComponentsDoc<'a> {
    page: Page<'a>,
    components: &'a [StatusComponent],
}

#[derive(Serialize)]
struct IncidentsDoc<'a> {
    page: Page<'a>,
    incidents: Vec<StatusIncident>,
}

#[derive(Serialize)]
struct MaintenancesDoc<'a> {
    page: Page<'a>,
    scheduled_maintenances: Vec<ScheduledMaintenance>,
}

/// Statuspage's text for a maintenance update posted without one.
fn default_text(status: MaintenanceStatus) -> String {
    match status {
        MaintenanceStatus::Scheduled => "We will be undergoing scheduled maintenance during this time.",
        MaintenanceStatus::InProgress => {
            "Scheduled maintenance is currently in progress. We will provide updates as necessary."
        }
        MaintenanceStatus::Verifying => "Verification is currently underway for the maintenance items.",
        MaintenanceStatus::Completed => "The scheduled maintenance has been completed.",
        MaintenanceStatus::Cancelled => "The scheduled maintenance has been cancelled.",
    }
    .to_string()
}

/// Statuspage's timestamp: milliseconds, in the page's time zone (`Z` for UTC).
pub fn time(t: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    if tz == chrono_tz::Tz::UTC || tz == chrono_tz::Tz::Etc__UTC {
        t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    } else {
        t.with_timezone(&tz).format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string()
    }
}

/// A stable id for a component group: the same name always gives the same id.
pub fn group_id(page_id: &str, group_key: &str) -> String {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("incidentd:{page_id}:group:{group_key}").as_bytes()).to_string()
}

pub fn incident_status(s: Status) -> &'static str {
    match s {
        Status::Investigating => "investigating",
        Status::Identified => "identified",
        Status::Monitoring => "monitoring",
        Status::Resolved | Status::Closed | Status::Merged => "resolved",
    }
}

pub fn impact(i: Impact) -> &'static str {
    i.as_str()
}

/// How bad things are overall, Statuspage's way: `none`, `minor`, `major` or `critical`,
/// from the worst component status (degraded → minor, partial outage → major, major outage
/// → critical) and the worst impact of an open incident.
pub fn indicator(state: &PublicState) -> Indicator {
    let from_components = state
        .components
        .iter()
        .map(|c| match c.effective_status {
            ComponentStatus::MajorOutage => 3,
            ComponentStatus::PartialOutage => 2,
            ComponentStatus::DegradedPerformance => 1,
            ComponentStatus::Operational | ComponentStatus::UnderMaintenance => 0,
        })
        .max()
        .unwrap_or(0);
    let from_incidents = state
        .active
        .iter()
        .map(|p| match p.incident.impact {
            Impact::Critical => 3,
            Impact::Major => 2,
            Impact::Minor => 1,
            Impact::None => 0,
        })
        .max()
        .unwrap_or(0);
    let maintenance = state.components.iter().any(|c| c.effective_status == ComponentStatus::UnderMaintenance);
    match from_components.max(from_incidents) {
        3 => Indicator { indicator: "critical", description: "Major System Outage" },
        2 => Indicator { indicator: "major", description: "Partial System Outage" },
        1 if from_incidents == 0 => Indicator { indicator: "minor", description: "Partially Degraded Service" },
        1 => Indicator { indicator: "minor", description: "Minor Service Outage" },
        _ if maintenance => Indicator { indicator: "none", description: "Service Under Maintenance" },
        _ => Indicator { indicator: "none", description: "All Systems Operational" },
    }
}
