//! What operators do with the list of customer subscribers: filter it, count it per
//! component, export it as CSV, and import a list from another tool (pre-confirmed: those
//! addresses confirmed there) with a report of every line not taken and why.
//!
//! **The CSV** has a header line naming its columns. Export writes `id, email, status, lang,
//! components, created_at, confirmed_at, unsubscribed_at` (components: ids separated by `;`,
//! empty for every component). Import needs an `email` column and reads `components` (ids or
//! names, separated by `;`, empty for every component) and `lang` (`en`, `de`) when present;
//! other columns are ignored and listed in the report, so another tool's export works as it
//! is. An address already known is left as it is (an address that unsubscribed is never
//! subscribed again by an import: only its owner can do that).

use std::collections::HashMap;

use serde::Serialize;
use uuid::Uuid;

use super::error::{Error, Result};
use super::subscriber::{Subscriber, SubscriberStatus, email_key, normalize_email, parse_lang};
use super::validate::Violations;

/// The most lines one import takes.
pub const MAX_IMPORT_LINES: usize = 100_000;

/// Which subscribers a list shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriberFilter {
    /// Only these statuses; every status when empty.
    pub statuses: Vec<SubscriberStatus>,
    /// Only those who hear about this component (who chose it, or every component).
    pub component: Option<Uuid>,
    /// Only addresses containing this text (any case).
    pub search: Option<String>,
}

/// How many subscribers there are, and how many hear about each component.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SubscriberCounts {
    pub pending: i64,
    pub confirmed: i64,
    pub unsubscribed: i64,
    /// Confirmed subscribers of every component.
    pub all_components: i64,
    /// Every component, in status-page order.
    pub components: Vec<ComponentCount>,
}

/// The confirmed subscribers of one component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ComponentCount {
    pub component_id: Uuid,
    pub name: String,
    /// Who chose this component.
    pub chose: i64,
    /// Who hears about it: who chose it, and the subscribers of every component.
    pub reached: i64,
}

impl SubscriberCounts {
    /// The counts from the store's figures: per status, confirmed subscribers of every
    /// component, and per component those who chose it.
    pub fn new(
        by_status: &[(SubscriberStatus, i64)],
        all_components: i64,
        chose: &HashMap<Uuid, i64>,
        components: &[(Uuid, String)],
    ) -> Self {
        let of = |s: SubscriberStatus| by_status.iter().filter(|(t, _)| *t == s).map(|(_, n)| n).sum();
        SubscriberCounts {
            pending: of(SubscriberStatus::Pending),
            confirmed: of(SubscriberStatus::Confirmed),
            unsubscribed: of(SubscriberStatus::Unsubscribed),
            all_components,
            components: components
                .iter()
                .map(|(id, name)| {
                    let chose = chose.get(id).copied().unwrap_or(0);
                    ComponentCount { component_id: *id, name: name.clone(), chose, reached: chose + all_components }
                })
                .collect(),
        }
    }
}

/// The export's columns, in order.
pub const EXPORT_COLUMNS: [&str; 8] =
    ["id", "email", "status", "lang", "components", "created_at", "confirmed_at", "unsubscribed_at"];

/// Writes subscribers as CSV lines (after the header, [`export_header`]).
pub fn export_rows(out: &mut csv::Writer<Vec<u8>>, subscribers: &[Subscriber]) -> Result<()> {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default()
    };
    for s in subscribers {
        let components: Vec<String> = s.components.iter().map(Uuid::to_string).collect();
        out.write_record([
            s.id.to_string(),
            s.email.clone(),
            s.status.as_str().to_string(),
            s.lang.clone(),
            components.join(";"),
            time(Some(s.created_at)),
            time(s.confirmed_at),
            time(s.unsubscribed_at),
        ])
        .map_err(|e| Error::Internal(format!("writing the CSV: {e}")))?;
    }
    Ok(())
}

/// A CSV writer with the export's header written.
pub fn export_header() -> Result<csv::Writer<Vec<u8>>> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(EXPORT_COLUMNS).map_err(|e| Error::Internal(format!("writing the CSV: {e}")))?;
    Ok(out)
}

/// A line of an import that was not taken, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ImportLine {
    /// The line in the file (the header is line 1).
    pub line: u64,
    /// The address on it, as given.
    pub email: Option<String>,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// New subscribers, confirmed.
    pub imported: u64,
    /// Addresses known already, left as they are.
    pub skipped: Vec<ImportLine>,
    /// Lines that could not be read, each with the reason.
    pub rejected: Vec<ImportLine>,
    /// Columns of the header that were not read.
    pub ignored_columns: Vec<String>,
}

/// A line of an import that can be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    pub line: u64,
    pub email: String,
    pub components: Vec<Uuid>,
    pub lang: &'static str,
}

/// Reads an import: the rows to take, and the report so far (rejected lines, ignored
/// columns). `components` are the page's components (id, name), for the `components`
/// column. A file without a header naming `email`, or with too many lines, is refused whole
/// (field `csv`).
pub fn parse_import(csv_text: &str, components: &[(Uuid, String)]) -> Result<(Vec<ImportRow>, ImportReport)> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(csv_text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| Error::invalid("csv", format!("the header line cannot be read: {e}")))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    let column = |name: &str| header.iter().position(|h| h == name);
    let Some(email_at) = column("email") else {
        return Err(Error::invalid("csv", "the first line must name the columns, one of them `email`"));
    };
    let (components_at, lang_at) = (column("components"), column("lang"));
    let mut report = ImportReport {
        ignored_columns: header
            .iter()
            .filter(|h| !["email", "components", "lang"].contains(&h.as_str()))
            .cloned()
            .collect(),
        ..Default::default()
    };
    let by_name: HashMap<String, Uuid> = components.iter().map(|(id, name)| (name.to_lowercase(), *id)).collect();
    let known: std::collections::HashSet<Uuid> = components.iter().map(|(id, _)| *id).collect();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        if i >= MAX_IMPORT_LINES {
            return Err(Error::invalid("csv", format!("at most {MAX_IMPORT_LINES} lines are imported at once")));
        }
        let line = record.as_ref().ok().and_then(|r| r.position()).map_or(i as u64 + 2, |p| p.line());
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                report.rejected.push(ImportLine { line, email: None, reason: format!("cannot be read: {e}") });
                continue;
            }
        };
        if record.iter().all(str::is_empty) {
            continue;
        }
        let raw_email = record.get(email_at).unwrap_or_default();
        let reject = |reason: String| ImportLine { line, email: Some(raw_email.to_string()), reason };
        let mut v = Violations::new();
        let email = normalize_email(&mut v, "email", Some(raw_email));
        let lang = parse_lang(&mut v, "lang", lang_at.and_then(|at| record.get(at)));
        let mut chosen = Vec::new();
        for item in components_at.and_then(|at| record.get(at)).unwrap_or_default().split(';') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            match Uuid::parse_str(item)
                .ok()
                .filter(|id| known.contains(id))
                .or_else(|| by_name.get(&item.to_lowercase()).copied())
            {
                Some(id) if !chosen.contains(&id) => chosen.push(id),
                Some(_) => {}
                None => v.add("components", format!("no component is named {item:?} or has that id")),
            }
        }
        v.component_ids("components", &chosen);
        if let Err(Error::Validation(fields)) = v.finish() {
            let reason = fields.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; ");
            report.rejected.push(reject(reason));
            continue;
        }
        if let Some(first) = seen.insert(email_key(&email), line) {
            report.rejected.push(reject(format!("email: the address is on line {first} already")));
            continue;
        }
        rows.push(ImportRow { line, email, components: chosen, lang });
    }
    Ok((rows, report))
}

/// Why an address known already is left as it is.
pub fn skip_reason(status: SubscriberStatus) -> &'static str {
    match status {
        SubscriberStatus::Confirmed => "subscribed already",
        SubscriberStatus::Pending => "asked to subscribe already: the confirmation mail is theirs to follow",
        SubscriberStatus::Unsubscribed => "unsubscribed earlier: only its owner can subscribe it again",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_takes_good_lines_and_says_why_it_rejects_the_others() {
        let api = Uuid::now_v7();
        let components = vec![(api, "API".to_string()), (Uuid::now_v7(), "Search".to_string())];
        let csv = format!(
            "\u{feff}Email,Name,components,lang\n\
             jane@Example.com,Jane,,de\n\
             not-an-address,X,,\n\
             JANE@example.com,Again,,\n\
             max@example.com,Max,api;{api},\n\
             eve@example.com,Eve,Billing,fr\n\
             \n\
             \"ann@example.com\",\"Ann, the second\",,\n"
        );
        let (rows, report) = parse_import(&csv, &components).unwrap();
        let emails: Vec<&str> = rows.iter().map(|r| r.email.as_str()).collect();
        assert_eq!(emails, ["jane@example.com", "max@example.com", "ann@example.com"]);
        assert_eq!((rows[0].lang, rows[0].line), ("de", 2));
        assert_eq!(rows[1].components, [api], "a name and an id of one component count once");
        assert_eq!(report.ignored_columns, ["name"]);
        let rejected: Vec<(u64, &str)> = report.rejected.iter().map(|r| (r.line, r.reason.as_str())).collect();
        assert_eq!(rejected[0], (3, "email: must be an email address such as jane@example.com"));
        assert_eq!(rejected[1], (4, "email: the address is on line 2 already"));
        assert_eq!(rejected[2].0, 6);
        assert!(
            rejected[2].1.contains("no component is named \"Billing\"")
                && rejected[2].1.contains("lang: must be en or de")
        );
        assert_eq!(rejected.len(), 3);
    }

    #[test]
    fn an_import_without_an_email_column_is_refused_whole() {
        let err = parse_import("name,lang\nJane,en\n", &[]).unwrap_err();
        assert!(matches!(&err, Error::Validation(v) if v[0].field == "csv"), "{err:?}");
    }

    #[test]
    fn counts_add_the_subscribers_of_every_component_to_each() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let counts = SubscriberCounts::new(
            &[(SubscriberStatus::Confirmed, 7), (SubscriberStatus::Pending, 2)],
            4,
            &HashMap::from([(a, 3)]),
            &[(a, "A".into()), (b, "B".into())],
        );
        assert_eq!((counts.confirmed, counts.pending, counts.unsubscribed), (7, 2, 0));
        assert_eq!((counts.components[0].chose, counts.components[0].reached), (3, 7));
        assert_eq!((counts.components[1].chose, counts.components[1].reached), (0, 4));
    }

    #[test]
    fn the_export_reads_back_as_an_import() {
        let now = chrono::Utc::now();
        let api = Uuid::now_v7();
        let s = Subscriber::imported("a@example.com".into(), vec![api], "de", now);
        let mut out = export_header().unwrap();
        export_rows(&mut out, std::slice::from_ref(&s)).unwrap();
        let csv = String::from_utf8(out.into_inner().unwrap()).unwrap();
        let (rows, report) = parse_import(&csv, &[(api, "API".into())]).unwrap();
        assert_eq!(rows, [ImportRow { line: 2, email: "a@example.com".into(), components: vec![api], lang: "de" }]);
        assert!(report.rejected.is_empty(), "{report:?}");
    }
}
