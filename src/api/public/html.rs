//! The status page: server-rendered HTML (askama templates under `templates/status/`), one
//! rendering per language, working without JavaScript, with no external assets.

use std::collections::BTreeMap;

use askama::Template;
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use uuid::Uuid;

use super::PublicSettings;
use super::i18n::{Lang, Strings};
use super::statuspage::indicator;
use crate::domain::history::Uptime;
use crate::domain::maintenance::MaintenanceStatus;
use crate::domain::public::{PublicIncidentPage, PublicMaintenancePage, PublicState};
use crate::domain::{CauseKind, Component, ComponentStatus, Impact, WorkaroundAvailability};

/// The page's one stylesheet, inlined (its hash is allowed by the Content-Security-Policy).
pub const STYLE: &str = include_str!("../../../templates/status/style.css");

/// What every page shares.
pub struct Frame<'a> {
    pub t: &'static Strings,
    pub lang: &'static str,
    pub name: &'a str,
    pub logo_url: Option<&'a str>,
    pub style: &'static str,
    /// The same page in the other languages: (tag, label, url).
    pub languages: Vec<(&'static str, &'static str, String)>,
    pub time_zone: String,
    pub updated: String,
}

pub struct ComponentRow {
    pub name: String,
    pub status: &'static str,
    pub status_class: &'static str,
    pub uptime: Option<String>,
    /// One per day, oldest first: its CSS class (none for a day at 100 % without incidents,
    /// `n` before there was data) and, for a day with downtime or incidents, its text (the
    /// cell's tooltip).
    pub days: Vec<(&'static str, Option<String>)>,
    /// What the bar shows, as text: the days with downtime or incidents, newest first, and
    /// that every other day was at 100 %.
    pub days_text: String,
}

pub struct Group {
    pub name: Option<String>,
    pub components: Vec<ComponentRow>,
}

pub struct UpdateView {
    pub status: &'static str,
    pub body: String,
    pub at: String,
    pub datetime: String,
}

pub struct IncidentView {
    pub reference: String,
    pub url: String,
    pub title: String,
    pub summary: String,
    pub status: &'static str,
    pub impact: &'static str,
    pub impact_class: &'static str,
    pub affected: Vec<(String, &'static str)>,
    pub eta: Option<String>,
    pub customers: Option<String>,
    pub workaround: Option<String>,
    pub third_party: Option<String>,
    pub started: String,
    pub resolved: Option<String>,
    pub updates: Vec<UpdateView>,
    /// Updates not shown on the overview.
    pub more_updates: usize,
    /// The published postmortem: what changes, and when it was published.
    pub postmortem: Option<(String, String)>,
    /// Only the headline, the times and the latest update (past incidents in lists).
    pub compact: bool,
}

/// A maintenance under way or upcoming, as the status page shows it.
pub struct MaintenanceView {
    pub id: String,
    pub title: String,
    pub body: String,
    pub status: &'static str,
    /// `s1` (the maintenance colour) while under way.
    pub status_class: &'static str,
    pub window: String,
    pub components: Vec<String>,
    /// The updates after the scheduling, newest first.
    pub updates: Vec<UpdateView>,
}

#[derive(Template)]
#[template(path = "status/index.html")]
pub struct IndexPage<'a> {
    pub frame: Frame<'a>,
    pub banner: &'static str,
    pub banner_class: &'static str,
    pub groups: Vec<Group>,
    /// Under way first, then upcoming, soonest first.
    pub maintenances: Vec<MaintenanceView>,
    pub active: Vec<IncidentView>,
    /// Active incidents beyond [`ACTIVE_SHOWN`], and the history page that lists them.
    pub more_active: usize,
    pub history_link: String,
    pub recent: Vec<IncidentView>,
    /// The form to subscribe by email, when the page sends email.
    pub subscribe: Option<SubscribeForm>,
}

/// A form posting an address and/or a choice of components.
pub struct SubscribeForm {
    pub action: String,
    /// Asks for an address (subscribing), or not (choosing components of a subscription).
    pub email: bool,
    pub components: Vec<ComponentChoice>,
    /// The components are shown unfolded (some are chosen).
    pub open: bool,
    pub button: &'static str,
}

/// A component offered in a [`SubscribeForm`].
pub struct ComponentChoice {
    pub id: uuid::Uuid,
    pub name: String,
    pub checked: bool,
}

/// At most this many active incidents are shown in full on the status page (an alert storm
/// can open hundreds); the rest are counted, with a link to the history that lists them.
pub const ACTIVE_SHOWN: usize = 20;
/// At most this many incidents are named in a day's text of an uptime bar.
const DAY_REFERENCES: usize = 5;

#[derive(Template)]
#[template(path = "status/incident.html")]
pub struct IncidentPage<'a> {
    pub frame: Frame<'a>,
    pub incident: IncidentView,
}

#[derive(Template)]
#[template(path = "status/history.html")]
pub struct HistoryPage<'a> {
    pub frame: Frame<'a>,
    /// (month heading, incidents) newest first.
    pub months: Vec<(String, Vec<IncidentView>)>,
    /// Links to earlier months: (label, url).
    pub earlier: Vec<(String, String)>,
}

/// A page about a customer's subscription: what happened, and a button when there is
/// something to do.
#[derive(Template)]
#[template(path = "status/subscription.html")]
pub struct SubscriptionPage<'a> {
    pub frame: Frame<'a>,
    pub heading: &'a str,
    pub paragraphs: Vec<String>,
    /// The form choosing components (the manage page).
    pub form: Option<SubscribeForm>,
    /// A POST to `action` with this label.
    pub button: Option<&'a str>,
    pub action: String,
}

/// Renders pages of one state in one language.
pub struct Renderer<'a> {
    pub settings: &'a PublicSettings,
    pub state: &'a PublicState,
    pub lang: Lang,
}

impl<'a> Renderer<'a> {
    fn t(&self) -> &'static Strings {
        self.lang.strings()
    }

    /// The frame of a page whose content last changed at `updated`.
    fn frame(&self, path: &str, updated: DateTime<Utc>) -> Frame<'a> {
        let t = self.t();
        let languages = Lang::ALL
            .iter()
            .filter(|l| **l != self.lang)
            .map(|l| {
                let label = match l {
                    Lang::En => "English",
                    Lang::De => "Deutsch",
                };
                let sep = if path.contains('?') { '&' } else { '?' };
                (l.tag(), label, format!("{path}{sep}lang={}", l.tag()))
            })
            .collect();
        Frame {
            t,
            lang: self.lang.tag(),
            name: &self.settings.name,
            logo_url: self.settings.logo_url.as_deref(),
            style: STYLE,
            languages,
            time_zone: self.state.time_zone.name().to_string(),
            updated: t.datetime(updated, self.state.time_zone),
        }
    }

    fn datetime(&self, at: DateTime<Utc>) -> String {
        self.t().datetime(at, self.state.time_zone)
    }

    /// A component's row: its status and its uptime bar, a cell per day coloured by the
    /// day's worst status. The bar is a picture (hidden from screen readers); its content is
    /// also given as text, visible to all: each day with downtime or incidents with its
    /// uptime, status and incidents, and that all other days were at 100 %. (A text per
    /// cell would make every component 90 list items long to listen to, and the page of a
    /// busy outage several times heavier.)
    fn component_row(&self, c: &Component, uptime: Option<&Uptime>) -> ComponentRow {
        let t = self.t();
        let mut first_data = None;
        let mut notable = Vec::new();
        let days = uptime
            .map(|u| {
                u.days
                    .iter()
                    .map(|d| {
                        let Some(p) = d.uptime_percent else { return ("n", None) };
                        first_data.get_or_insert(d.date);
                        // An alert storm can put hundreds of incidents on one day: a few are named.
                        let refs: Vec<String> = d
                            .incident_ids
                            .iter()
                            .filter_map(|id| self.reference_of(*id))
                            .take(DAY_REFERENCES)
                            .collect();
                        let unnamed = d.incident_ids.len().saturating_sub(refs.len());
                        if p >= 100.0 && refs.is_empty() && d.worst_status == ComponentStatus::Operational {
                            return ("", None);
                        }
                        let mut text = format!("{}: {}", t.day(d.date), t.percent(p));
                        if d.worst_status != ComponentStatus::Operational {
                            text.push_str(&format!(", {}", t.component_status(d.worst_status)));
                        }
                        if !refs.is_empty() {
                            let more = if unnamed > 0 { format!(", {unnamed} {}", t.more) } else { String::new() };
                            text.push_str(&format!(" ({}{more})", refs.join(", ")));
                        }
                        notable.push(text.clone());
                        let class = match d.worst_status {
                            ComponentStatus::Operational => "",
                            other => status_class(other),
                        };
                        (class, Some(text))
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        notable.reverse();
        let mut days_text = if notable.is_empty() {
            t.all_days_up.to_string()
        } else {
            format!("{}. {}", notable.join("; "), t.other_days_up)
        };
        if let (Some(first), Some(("n", _))) = (first_data, days.first()) {
            days_text.push_str(&format!(" {}", t.no_data_before_day(first)));
        }
        ComponentRow {
            name: c.name.clone(),
            status: t.component_status(c.effective_status),
            status_class: status_class(c.effective_status),
            uptime: uptime.and_then(|u| u.uptime_percent).map(|p| t.percent(p)),
            days,
            days_text,
        }
    }

    fn reference_of(&self, id: Uuid) -> Option<String> {
        self.state
            .active
            .iter()
            .chain(&self.state.past)
            .find(|p| p.incident.id == id)
            .map(|p| p.incident.reference.to_string())
    }

    /// An incident as a card shows it: with at most `max_updates` updates, and `compact`
    /// without its details (a past incident in a list).
    pub fn incident_view(&self, page: &PublicIncidentPage, max_updates: usize, compact: bool) -> IncidentView {
        let t = self.t();
        let i = &page.incident;
        let reference = i.reference.to_string();
        let affected = i
            .affected_components
            .iter()
            .filter_map(|a| {
                let name = self.state.components.iter().find(|c| c.id == a.component_id)?.name.clone();
                Some((name, t.component_status(a.status)))
            })
            .collect();
        let workaround = match i.workaround.availability {
            WorkaroundAvailability::Available => i.workaround.text.clone().or_else(|| Some(String::new())),
            WorkaroundAvailability::None => Some(t.no_workaround.to_string()),
            WorkaroundAvailability::Unknown => None,
        }
        .filter(|w| !w.is_empty());
        let third_party = (i.cause.kind == CauseKind::ThirdParty).then(|| match &i.cause.provider {
            Some(p) => format!("{} ({p})", t.cause_third_party),
            None => t.cause_third_party.to_string(),
        });
        let updates: Vec<UpdateView> = page
            .updates
            .iter()
            .take(max_updates)
            .map(|u| UpdateView {
                status: t.incident_status(u.status),
                body: u.body.clone(),
                at: self.datetime(u.created_at),
                datetime: u.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            })
            .collect();
        IncidentView {
            url: format!("/status/incidents/{reference}?lang={}", self.lang.tag()),
            reference,
            title: i.title.clone(),
            summary: i.summary.clone(),
            status: t.incident_status(i.status),
            impact: t.impact(i.impact),
            impact_class: impact_class(i.impact),
            affected,
            eta: i.eta.filter(|_| i.status.is_open()).map(|e| self.datetime(e)),
            customers: i.affected_customers_estimate.filter(|n| *n > 0).map(|n| t.about_customers(n)),
            workaround,
            third_party,
            started: self.datetime(i.started_at),
            resolved: i.resolved_at.filter(|_| !i.status.is_open()).map(|r| self.datetime(r)),
            more_updates: page.updates.len().saturating_sub(updates.len()),
            updates,
            postmortem: page.postmortem.as_ref().map(|p| (p.summary.clone(), self.datetime(p.published_at))),
            compact,
        }
    }

    /// `/status`.
    pub fn index(&self) -> askama::Result<String> {
        let t = self.t();
        let mut groups: Vec<Group> = Vec::new();
        for c in &self.state.components {
            let row = self.component_row(c, self.state.uptime.iter().find(|u| u.component_id == c.id));
            match groups.last_mut() {
                Some(g) if g.name == c.group => g.components.push(row),
                _ => groups.push(Group { name: c.group.clone(), components: vec![row] }),
            }
        }
        let week_ago = self.state.at - Duration::days(7);
        let recent: Vec<IncidentView> = self
            .state
            .past
            .iter()
            .filter(|p| p.incident.resolved_at.or(p.incident.closed_at).is_some_and(|r| r >= week_ago))
            .take(20)
            .map(|p| self.incident_view(p, 1, true))
            .collect();
        let (banner, banner_class) = banner(t, self.state);
        let mut maintenances: Vec<&PublicMaintenancePage> = self
            .state
            .maintenances
            .iter()
            .filter(|p| p.maintenance.status == MaintenanceStatus::Scheduled || p.maintenance.status.is_active())
            .collect();
        maintenances.sort_by_key(|p| (!p.maintenance.status.is_active(), p.maintenance.scheduled_for));
        IndexPage {
            frame: self.frame("/status", self.state.updated_at),
            banner,
            banner_class,
            groups,
            maintenances: maintenances.into_iter().take(ACTIVE_SHOWN).map(|p| self.maintenance_view(p)).collect(),
            active: self.state.active.iter().take(ACTIVE_SHOWN).map(|p| self.incident_view(p, 3, false)).collect(),
            more_active: self.state.active.len().saturating_sub(ACTIVE_SHOWN),
            history_link: format!("/status/history?lang={}", self.lang.tag()),
            recent,
            subscribe: self
                .settings
                .email_subscriptions
                .then(|| self.subscribe_form("/status/subscribe".into(), true, &[])),
        }
        .render()
    }

    fn maintenance_view(&self, page: &PublicMaintenancePage) -> MaintenanceView {
        let t = self.t();
        let m = &page.maintenance;
        let updates = page
            .later_updates()
            .iter()
            .take(3)
            .map(|u| UpdateView {
                status: t.maintenance_status(u.status),
                body: t.maintenance_update_body(u),
                at: self.datetime(u.created_at),
                datetime: u.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            })
            .collect();
        MaintenanceView {
            id: m.id.to_string(),
            title: m.title.clone(),
            body: m.body.clone(),
            status: t.maintenance_status(m.status),
            status_class: if m.status.is_active() { "s1" } else { "" },
            window: t.window(m.scheduled_for, m.scheduled_until, self.state.time_zone),
            components: m
                .components
                .iter()
                .filter_map(|id| self.state.components.iter().find(|c| c.id == *id).map(|c| c.name.clone()))
                .collect(),
            updates,
        }
    }

    /// A page about a customer's subscription.
    pub fn subscription(
        &self,
        path: &str,
        heading: &str,
        paragraphs: Vec<String>,
        button: Option<(&str, String)>,
    ) -> askama::Result<String> {
        let (button, action) = match button {
            Some((label, action)) => (Some(label), action),
            None => (None, String::new()),
        };
        SubscriptionPage { frame: self.frame(path, self.state.at), heading, paragraphs, form: None, button, action }
            .render()
    }

    /// A form of the page's components, `chosen` checked, posting to `action`.
    pub fn subscribe_form(&self, action: String, email: bool, chosen: &[uuid::Uuid]) -> SubscribeForm {
        let t = self.t();
        let components: Vec<ComponentChoice> = self
            .state
            .components
            .iter()
            .map(|c| ComponentChoice {
                id: c.id,
                name: match &c.group {
                    Some(g) => format!("{g} · {}", c.name),
                    None => c.name.clone(),
                },
                checked: chosen.contains(&c.id),
            })
            .collect();
        let button = if email { t.subscribe_button } else { t.manage_save };
        // Choosing components is what the manage page is for: unfolded there.
        SubscribeForm { action, email, open: !email || !chosen.is_empty(), components, button }
    }

    /// The page choosing the components of a subscription (the manage link's).
    pub fn manage(&self, action: String, chosen: &[uuid::Uuid], saved: bool) -> askama::Result<String> {
        let t = self.t();
        let mut paragraphs = vec![if chosen.is_empty() { t.manage_all } else { t.manage_chosen }.to_string()];
        if saved {
            paragraphs.insert(0, t.manage_saved.to_string());
        }
        let form = Some(self.subscribe_form(action, false, chosen));
        SubscriptionPage {
            // The language links lead to the status page: the token stays out of them.
            frame: self.frame("/status", self.state.at),
            heading: t.manage_heading,
            paragraphs,
            form,
            button: None,
            action: String::new(),
        }
        .render()
    }

    /// `/status/incidents/{reference}`.
    pub fn incident(&self, page: &PublicIncidentPage) -> askama::Result<String> {
        let view = self.incident_view(page, usize::MAX, false);
        let frame = self.frame(&format!("/status/incidents/{}", view.reference), page.incident.updated_at);
        IncidentPage { frame, incident: view }.render()
    }

    /// `/status/history`: the months of `incidents` (newest first), with links to earlier ones.
    /// The history page: every month from `last` back to `first` (the first days of those
    /// months), each with its incidents or a line saying there were none, and links to the
    /// twelve months before.
    pub fn history(
        &self,
        path: &str,
        incidents: &[PublicIncidentPage],
        first: NaiveDate,
        last: NaiveDate,
    ) -> askama::Result<String> {
        let t = self.t();
        let mut by_month: BTreeMap<(i32, u32), Vec<IncidentView>> = BTreeMap::new();
        let mut month = first;
        while month <= last {
            by_month.insert((month.year(), month.month()), Vec::new());
            let Some(next) = month.checked_add_months(chrono::Months::new(1)) else { break };
            month = next;
        }
        for p in incidents {
            let local = p.incident.created_at.with_timezone(&self.state.time_zone);
            by_month.entry((local.year(), local.month())).or_default().push(self.incident_view(
                p,
                1,
                !p.incident.status.is_open(),
            ));
        }
        let months = by_month.into_iter().rev().map(|((y, m), list)| (t.month(y, m), list)).collect();
        let earlier = (1..=12)
            .filter_map(|back| {
                let d = first.checked_sub_months(chrono::Months::new(back))?;
                Some((
                    t.month(d.year(), d.month()),
                    format!("/status/history?month={:04}-{:02}&lang={}", d.year(), d.month(), self.lang.tag()),
                ))
            })
            .collect();
        let updated = incidents.iter().map(|p| p.incident.updated_at).max().unwrap_or(self.state.updated_at);
        HistoryPage { frame: self.frame(path, updated), months, earlier }.render()
    }
}

fn banner(t: &'static Strings, state: &PublicState) -> (&'static str, &'static str) {
    let indicator = indicator(state);
    match indicator.indicator {
        "critical" => (t.critical_banner, "s4"),
        "major" => (t.major_banner, "s3"),
        "minor" => (t.minor_banner, "s2"),
        _ if indicator.description == "Service Under Maintenance" => (t.under_maintenance_banner, "s1"),
        _ => (t.all_operational, "s0"),
    }
}

/// The CSS class of a status: s0 (operational) to s4 (major outage), s1 maintenance.
pub fn status_class(s: ComponentStatus) -> &'static str {
    match s {
        ComponentStatus::Operational => "s0",
        ComponentStatus::UnderMaintenance => "s1",
        ComponentStatus::DegradedPerformance => "s2",
        ComponentStatus::PartialOutage => "s3",
        ComponentStatus::MajorOutage => "s4",
    }
}

fn impact_class(i: Impact) -> &'static str {
    match i {
        Impact::None => "s0",
        Impact::Minor => "s2",
        Impact::Major => "s3",
        Impact::Critical => "s4",
    }
}
