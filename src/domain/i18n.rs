//! Every string customers read (the status page, its feeds, the mails), in English and
//! German, in one catalogue; and how numbers, dates and times read in each.

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use crate::domain::maintenance::MaintenanceStatus;
use crate::domain::public::PublicMaintenanceUpdate;
use crate::domain::{ComponentStatus, Impact, Status, WorkaroundAvailability};

/// The languages the status page speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    En,
    De,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::De];

    /// The BCP 47 tag (`<html lang>`, `Content-Language`).
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
        }
    }

    pub fn parse(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "de" => Some(Lang::De),
            _ => None,
        }
    }

    /// The best language for an `Accept-Language` header (q-values respected), else English.
    pub fn negotiate(accept_language: Option<&str>) -> Lang {
        let Some(header) = accept_language else { return Lang::En };
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut pieces = part.split(';');
            let tag = pieces.next().unwrap_or_default();
            let q = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if let Some(lang) = Lang::parse(tag)
                && q > 0.0
                && best.is_none_or(|(bq, _)| q > bq)
            {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::En, |(_, l)| l)
    }

    pub fn strings(self) -> &'static Strings {
        match self {
            Lang::En => &EN,
            Lang::De => &DE,
        }
    }
}

/// Declares the catalogue: one field per string, with its English and German text side by
/// side, so a string cannot be added in one language only.
macro_rules! catalogue {
    ($($(#[$m:meta])* $name:ident: $en:expr, $de:expr;)+) => {
        /// The fixed strings of the public pages in one language.
        pub struct Strings { pub lang: Lang, $($(#[$m])* pub $name: &'static str,)+ }
        static EN: Strings = Strings { lang: Lang::En, $($name: $en,)+ };
        static DE: Strings = Strings { lang: Lang::De, $($name: $de,)+ };
    };
}

catalogue! {
    all_operational: "All systems operational", "Alle Systeme funktionieren";
    under_maintenance_banner: "Maintenance in progress", "Wartung läuft";
    minor_banner: "Some systems are degraded", "Einige Systeme sind beeinträchtigt";
    major_banner: "Partial outage", "Teilweiser Ausfall";
    critical_banner: "Major outage", "Größerer Ausfall";
    components: "Components", "Komponenten";
    active_incidents: "Current incidents", "Aktuelle Störungen";
    more_active: "more current incidents in the history", "weitere aktuelle Störungen im Verlauf";
    more: "more", "weitere";
    recent_incidents: "Resolved in the last 7 days", "In den letzten 7 Tagen behoben";
    no_recent_incidents: "No incidents in the last 7 days.", "Keine Störungen in den letzten 7 Tagen.";
    history: "Incident history", "Störungsverlauf";
    history_empty: "No incidents this month.", "In diesem Monat gab es keine Störungen.";
    earlier: "Earlier", "Früher";
    updates: "Updates", "Meldungen";
    no_updates: "No update has been posted yet.", "Es wurde noch keine Meldung veröffentlicht.";
    affected: "Affected", "Betroffen";
    impact: "Impact", "Auswirkung";
    eta: "Expected resolution", "Voraussichtlich behoben";
    customers: "Customers affected", "Betroffene Kunden";
    workaround: "Workaround", "Umgehung";
    no_workaround: "There is no workaround at the moment.", "Derzeit gibt es keine Umgehung.";
    started: "Started", "Begonnen";
    resolved: "Resolved", "Behoben";
    uptime_90_days: "Uptime over the last 90 days", "Verfügbarkeit in den letzten 90 Tagen";
    days_ago_90: "90 days ago", "vor 90 Tagen";
    uptime: "uptime", "Verfügbarkeit";
    today: "Today", "Heute";
    no_data_before: "No data before", "Keine Daten vor dem";
    all_days_up: "100% on every day.", "An jedem Tag 100 %.";
    other_days_up: "100% on every other day.", "An allen anderen Tagen 100 %.";
    view_incident: "Details", "Details";
    subscribe_feeds: "Feeds", "Feeds";
    json_api: "JSON API", "JSON-API";
    back: "Back to the status page", "Zurück zur Statusseite";
    language: "Language", "Sprache";
    powered_by: "Powered by incidentd", "Betrieben mit incidentd";
    times_in: "Times are shown in", "Zeiten in";
    skip_to_content: "Skip to content", "Zum Inhalt springen";
    not_found: "There is no such incident.", "Diese Störung gibt es nicht.";
    cause: "Cause", "Ursache";
    merged_status: "Merged", "Zusammengeführt";
    postmortem: "Postmortem", "Nachbetrachtung";
    published: "Published", "Veröffentlicht";
    cause_third_party: "A third party", "Ein Drittanbieter";
    last_updated: "Last updated", "Zuletzt aktualisiert";
    operational: "Operational", "Funktionsfähig";
    degraded_performance: "Degraded performance", "Eingeschränkte Leistung";
    partial_outage: "Partial outage", "Teilweiser Ausfall";
    major_outage: "Major outage", "Ausfall";
    under_maintenance: "Under maintenance", "In Wartung";
    investigating: "Investigating", "Wird untersucht";
    identified: "Identified", "Ursache gefunden";
    monitoring: "Monitoring", "Wird beobachtet";
    resolved_status: "Resolved", "Behoben";
    impact_none: "None", "Keine";
    impact_minor: "Minor", "Gering";
    impact_major: "Major", "Erheblich";
    impact_critical: "Critical", "Kritisch";
    maintenance: "Scheduled maintenance", "Geplante Wartungsarbeiten";
    maintenance_window: "Window", "Zeitraum";
    maintenance_scheduled: "Scheduled", "Geplant";
    maintenance_in_progress: "In progress", "Läuft";
    maintenance_verifying: "Verifying", "Wird überprüft";
    maintenance_completed: "Completed", "Abgeschlossen";
    maintenance_cancelled: "Cancelled", "Abgesagt";
    maintenance_started_text: "The maintenance has started.", "Die Wartung hat begonnen.";
    maintenance_completed_text: "The maintenance has been completed.", "Die Wartung ist abgeschlossen.";
    maintenance_cancelled_text: "The maintenance has been cancelled.", "Die Wartung wurde abgesagt.";
    subscribe_heading: "Get updates by email", "Updates per E-Mail erhalten";
    subscribe_sent: "Check your inbox: if the address can be subscribed, a mail with a link to confirm is on its way. Nothing else is sent until you follow it.", "Sehen Sie in Ihr Postfach: Wenn die Adresse abonniert werden kann, ist eine E-Mail mit einem Bestätigungslink unterwegs. Bis Sie ihm folgen, senden wir nichts anderes.";
    subscribed_heading: "You are subscribed", "Ihr Abonnement ist bestätigt";
    subscribed_text: "You will get an email when there is an incident or maintenance. Every email has a link to unsubscribe.", "Sie erhalten eine E-Mail bei Störungen und Wartungen. Jede E-Mail enthält einen Link zum Abbestellen.";
    unsubscribe_heading: "Unsubscribe", "Abbestellen";
    unsubscribe_question: "Stop the emails to this address?", "Keine E-Mails mehr an diese Adresse senden?";
    unsubscribed_text: "You are unsubscribed: you will get no more emails from us.", "Sie haben abbestellt: Sie erhalten keine E-Mails mehr von uns.";
    link_invalid_heading: "This link does not work", "Dieser Link funktioniert nicht";
    link_invalid: "The link is not complete or not valid: copy the whole link from the mail.", "Der Link ist unvollständig oder ungültig: Kopieren Sie den ganzen Link aus der E-Mail.";
    link_expired: "The link has expired: subscribe again on the status page for a new one.", "Der Link ist abgelaufen: Abonnieren Sie auf der Statusseite erneut, um einen neuen zu erhalten.";
    link_cancelled: "This subscription was cancelled since: subscribe again on the status page.", "Dieses Abonnement wurde inzwischen beendet: Abonnieren Sie auf der Statusseite erneut.";
    maintenance_verifying_text: "The work is done and being verified.", "Die Arbeiten sind erledigt und werden überprüft.";
    status: "Status", "Status";
    not_yet_known: "Not yet known", "Noch nicht bekannt";
    maintenance_starts_soon: "Maintenance starts soon", "Wartung beginnt bald";
    mail_view: "On the status page", "Auf der Statusseite";
    mail_why: "You get this email because this address subscribed to", "Sie erhalten diese E-Mail, weil diese Adresse Meldungen abonniert hat von";
    mail_manage: "Choose the components you hear about", "Komponenten auswählen, über die Sie informiert werden";
    unsubscribe: "Unsubscribe", "Abbestellen";
    manage_heading: "Your subscription", "Ihr Abonnement";
    manage_all: "You hear about every component.", "Sie werden über alle Komponenten informiert.";
    manage_chosen: "You hear only about the components chosen below.", "Sie werden nur über die unten gewählten Komponenten informiert.";
    changed: "Changed", "Geändert";
    manage_some: "Only these components:", "Nur diese Komponenten:";
    manage_save: "Save", "Speichern";
    manage_saved: "Saved: you will hear about what you chose.", "Gespeichert: Sie werden über Ihre Auswahl informiert.";
    subscribe_email: "Email address", "E-Mail-Adresse";
    subscribe_button: "Subscribe", "Abonnieren";
    subscribe_components_hint: "Choose components to hear only about them; choose none to hear about everything.", "Wählen Sie Komponenten, um nur über diese informiert zu werden; ohne Auswahl erhalten Sie alles.";
}

impl Strings {
    pub fn component_status(&self, s: ComponentStatus) -> &'static str {
        match s {
            ComponentStatus::Operational => self.operational,
            ComponentStatus::DegradedPerformance => self.degraded_performance,
            ComponentStatus::PartialOutage => self.partial_outage,
            ComponentStatus::MajorOutage => self.major_outage,
            ComponentStatus::UnderMaintenance => self.under_maintenance,
        }
    }

    pub fn maintenance_status(&self, s: MaintenanceStatus) -> &'static str {
        match s {
            MaintenanceStatus::Scheduled => self.maintenance_scheduled,
            MaintenanceStatus::InProgress => self.maintenance_in_progress,
            MaintenanceStatus::Verifying => self.maintenance_verifying,
            MaintenanceStatus::Completed => self.maintenance_completed,
            MaintenanceStatus::Cancelled => self.maintenance_cancelled,
        }
    }

    /// An update's text: its own, else what its move means.
    pub fn maintenance_update_body(&self, u: &PublicMaintenanceUpdate) -> String {
        if u.body.is_empty() { self.maintenance_update_text(u.status).to_string() } else { u.body.clone() }
    }

    /// What an update posted without text says: the move it records (the scheduling's own
    /// text is the maintenance's body).
    pub fn maintenance_update_text(&self, s: MaintenanceStatus) -> &'static str {
        match s {
            MaintenanceStatus::Scheduled => "",
            MaintenanceStatus::InProgress => self.maintenance_started_text,
            MaintenanceStatus::Verifying => self.maintenance_verifying_text,
            MaintenanceStatus::Completed => self.maintenance_completed_text,
            MaintenanceStatus::Cancelled => self.maintenance_cancelled_text,
        }
    }

    pub fn incident_status(&self, s: Status) -> &'static str {
        match s {
            Status::Investigating => self.investigating,
            Status::Identified => self.identified,
            Status::Monitoring => self.monitoring,
            Status::Resolved | Status::Closed => self.resolved_status,
            Status::Merged => self.merged_status,
        }
    }

    pub fn impact(&self, i: Impact) -> &'static str {
        match i {
            Impact::None => self.impact_none,
            Impact::Minor => self.impact_minor,
            Impact::Major => self.impact_major,
            Impact::Critical => self.impact_critical,
        }
    }

    pub fn workaround(&self, a: WorkaroundAvailability) -> Option<&'static str> {
        match a {
            WorkaroundAvailability::None => Some(self.no_workaround),
            WorkaroundAvailability::Available | WorkaroundAvailability::Unknown => None,
        }
    }

    /// "about 4,300 customers" / "etwa 4.300 Kunden" (`n` already rounded).
    pub fn about_customers(&self, n: i64) -> String {
        match self.lang {
            Lang::En => format!("about {} {}", grouped(n, ','), if n == 1 { "customer" } else { "customers" }),
            Lang::De => format!("etwa {} {}", grouped(n, '.'), if n == 1 { "Kunde" } else { "Kunden" }),
        }
    }

    /// An uptime percentage: "99.98%" / "99,98 %" (each language's typography).
    pub fn percent(&self, p: f64) -> String {
        let text = if p >= 100.0 { "100".to_string() } else { format!("{:.2}", (p * 100.0).floor() / 100.0) };
        match self.lang {
            Lang::En => format!("{text}%"),
            Lang::De => format!("{} %", text.replace('.', ",")),
        }
    }

    /// "30 Nov 2026" / "30. Nov. 2026".
    pub fn date(&self, d: NaiveDate) -> String {
        let month = self.month_short(d.month());
        match self.lang {
            Lang::En => format!("{} {month} {}", d.day(), d.year()),
            Lang::De => format!("{}. {month} {}", d.day(), d.year()),
        }
    }

    /// "30 Nov" / "30. Nov." (the uptime cells).
    /// "No data before 1 Dec." as a sentence: one full stop, also after an abbreviated month
    /// ("1. Dez.").
    pub fn no_data_before_day(&self, d: NaiveDate) -> String {
        let day = self.day(d);
        let stop = if day.ends_with('.') { "" } else { "." };
        format!("{} {day}{stop}", self.no_data_before)
    }

    pub fn day(&self, d: NaiveDate) -> String {
        let month = self.month_short(d.month());
        match self.lang {
            Lang::En => format!("{} {month}", d.day()),
            Lang::De => format!("{}. {month}", d.day()),
        }
    }

    /// "November 2026".
    pub fn month(&self, year: i32, month: u32) -> String {
        format!("{} {year}", self.month_long(month))
    }

    /// A moment in the page's time zone: "30 Nov 2026, 14:05 CET" / "30. Nov. 2026, 14:05 CET".
    pub fn datetime(&self, t: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
        let local = t.with_timezone(&tz);
        format!("{}, {}", self.date(local.date_naive()), local.format("%H:%M %Z"))
    }

    /// A window in the page's time zone: "1 Dec 2026, 22:00 – 23:00 UTC" within one day,
    /// else both ends in full.
    pub fn window(&self, from: DateTime<Utc>, until: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
        let (a, b) = (from.with_timezone(&tz), until.with_timezone(&tz));
        if a.date_naive() == b.date_naive() && a.format("%Z").to_string() == b.format("%Z").to_string() {
            format!("{}, {} – {}", self.date(a.date_naive()), a.format("%H:%M"), b.format("%H:%M %Z"))
        } else {
            format!("{} – {}", self.datetime(from, tz), self.datetime(until, tz))
        }
    }

    fn month_short(&self, m: u32) -> &'static str {
        const EN: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        const DE: [&str; 12] =
            ["Jan.", "Feb.", "März", "Apr.", "Mai", "Juni", "Juli", "Aug.", "Sep.", "Okt.", "Nov.", "Dez."];
        let i = (m.clamp(1, 12) - 1) as usize;
        match self.lang {
            Lang::En => EN[i],
            Lang::De => DE[i],
        }
    }

    fn month_long(&self, m: u32) -> &'static str {
        const EN: [&str; 12] = [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ];
        const DE: [&str; 12] = [
            "Januar",
            "Februar",
            "März",
            "April",
            "Mai",
            "Juni",
            "Juli",
            "August",
            "September",
            "Oktober",
            "November",
            "Dezember",
        ];
        let i = (m.clamp(1, 12) - 1) as usize;
        match self.lang {
            Lang::En => EN[i],
            Lang::De => DE[i],
        }
    }
}

/// `n` with thousands separated: 4,300 / 4.300.
fn grouped(n: i64, separator: char) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(separator);
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_within_one_day_names_the_day_once() {
        let at = |h: u32, d: u32| {
            chrono::NaiveDate::from_ymd_opt(2026, 12, d).unwrap().and_hms_opt(h, 0, 0).unwrap().and_utc()
        };
        let tz = chrono_tz::Tz::Europe__Berlin;
        assert_eq!(Lang::En.strings().window(at(21, 1), at(22, 1), tz), "1 Dec 2026, 22:00 – 23:00 CET");
        assert_eq!(
            Lang::De.strings().window(at(22, 1), at(23, 1), tz),
            "1. Dez. 2026, 23:00 CET – 2. Dez. 2026, 00:00 CET"
        );
    }

    #[test]
    fn the_language_follows_accept_language_weights_and_falls_back_to_english() {
        assert_eq!(Lang::negotiate(Some("de-DE,de;q=0.9,en;q=0.8")), Lang::De);
        assert_eq!(Lang::negotiate(Some("fr-FR, en;q=0.5, de;q=0.7")), Lang::De);
        assert_eq!(Lang::negotiate(Some("de;q=0, en")), Lang::En);
        assert_eq!(Lang::negotiate(Some("fr")), Lang::En);
        assert_eq!(Lang::negotiate(None), Lang::En);
    }

    #[test]
    fn figures_read_as_each_language_writes_them() {
        assert_eq!(EN.about_customers(4300), "about 4,300 customers");
        assert_eq!(DE.about_customers(4300), "etwa 4.300 Kunden");
        assert_eq!(EN.about_customers(1_200_000), "about 1,200,000 customers");
        assert_eq!(EN.percent(99.987), "99.98%");
        assert_eq!(DE.percent(99.987), "99,98 %");
        assert_eq!(EN.percent(100.0), "100%");
        let d = NaiveDate::from_ymd_opt(2026, 3, 5).unwrap();
        assert_eq!((EN.date(d), DE.date(d)), ("5 Mar 2026".into(), "5. März 2026".into()));
        let dec = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let may = NaiveDate::from_ymd_opt(2026, 5, 1).unwrap();
        assert_eq!(EN.no_data_before_day(dec), "No data before 1 Dec.");
        assert_eq!(DE.no_data_before_day(dec), "Keine Daten vor dem 1. Dez.");
        assert_eq!(DE.no_data_before_day(may), "Keine Daten vor dem 1. Mai.");
        let t = DateTime::parse_from_rfc3339("2026-11-30T13:05:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(DE.datetime(t, chrono_tz::Europe::Berlin), "30. Nov. 2026, 14:05 CET");
    }
}
