//! Incidents and their timeline: rows, conversions and the statements both backends share.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use sqlx::types::Json;
use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use super::{
    DbId, DbIds, DbTime, OPEN_STATUSES, insert_sql, parse, parse_opt, push_newest_first, push_oldest_first, read_row,
    select_sql, time, untime, write_row,
};
use crate::domain::page::PageToken;
use crate::domain::query::IncidentFilter;
use crate::domain::{
    AffectedComponent, Cause, Error, FieldChange, Incident, IncidentRef, Result, TimelineEntry, Visibility, Workaround,
};

read_row! {
    /// An incident as read.
    pub struct IncidentRow {
        id: DbId,
        reference_number: i64,
        title: String,
        summary: String,
        severity: String,
        status: String,
        impact: String,
        affected_components: Json<Vec<AffectedComponent>>,
        affected_customers: Option<i64>,
        eta: Option<DbTime>,
        workaround_availability: String,
        workaround_text: Option<String>,
        cause_kind: String,
        cause_provider: Option<String>,
        cause_external_reference: Option<String>,
        commander: Option<String>,
        labels: Json<BTreeMap<String, String>>,
        related_incident_ids: Json<Vec<Uuid>>,
        root_cause: Option<String>,
        resolution_summary: Option<String>,
        reopen_count: i32,
        started_at: DbTime,
        detected_at: DbTime,
        acknowledged_at: Option<DbTime>,
        acknowledged_by: Option<String>,
        identified_at: Option<DbTime>,
        mitigated_at: Option<DbTime>,
        resolved_at: Option<DbTime>,
        closed_at: Option<DbTime>,
        created_at: DbTime,
        updated_at: DbTime,
        version: i64,
        merged_into: Option<DbId>,
    }
}

write_row! {
    /// An incident as written by insert and update (the reference is the store's to assign;
    /// `search_text` and `component_ids`, which the analytics group by, are derived).
    pub struct IncidentWrite<'a> {
        id: DbId,
        title: &'a str,
        summary: &'a str,
        search_text: String,
        component_ids: DbIds,
        severity: &'a str,
        status: &'a str,
        impact: &'a str,
        affected_components: Json<&'a Vec<AffectedComponent>>,
        affected_customers: Option<i64>,
        eta: Option<DbTime>,
        workaround_availability: &'a str,
        workaround_text: Option<&'a str>,
        cause_kind: &'a str,
        cause_provider: Option<&'a str>,
        cause_external_reference: Option<&'a str>,
        commander: Option<&'a str>,
        labels: Json<&'a BTreeMap<String, String>>,
        related_incident_ids: Json<&'a Vec<Uuid>>,
        root_cause: Option<&'a str>,
        resolution_summary: Option<&'a str>,
        reopen_count: i32,
        started_at: DbTime,
        detected_at: DbTime,
        acknowledged_at: Option<DbTime>,
        acknowledged_by: Option<&'a str>,
        identified_at: Option<DbTime>,
        mitigated_at: Option<DbTime>,
        resolved_at: Option<DbTime>,
        closed_at: Option<DbTime>,
        created_at: DbTime,
        updated_at: DbTime,
        version: i64,
        merged_into: Option<DbId>,
    }
}

impl<'a> From<&'a Incident> for IncidentWrite<'a> {
    fn from(incident: &'a Incident) -> Self {
        let search_text = incident.search_text();
        let component_ids = DbIds(incident.affected_components.iter().map(|c| c.component_id).collect());
        let Incident {
            id,
            reference: _,
            title,
            summary,
            severity,
            status,
            impact,
            affected_components,
            affected_customers,
            eta,
            workaround: Workaround { availability, text },
            cause: Cause { kind, provider, external_reference },
            commander,
            labels,
            related_incident_ids,
            root_cause,
            resolution_summary,
            reopen_count,
            started_at,
            detected_at,
            acknowledged_at,
            acknowledged_by,
            identified_at,
            mitigated_at,
            resolved_at,
            closed_at,
            created_at,
            updated_at,
            version,
            merged_into,
        } = incident;
        IncidentWrite {
            id: DbId(*id),
            title,
            summary,
            search_text,
            component_ids,
            severity: severity.as_str(),
            status: status.as_str(),
            impact: impact.as_str(),
            affected_components: Json(affected_components),
            affected_customers: *affected_customers,
            eta: time(*eta),
            workaround_availability: availability.as_str(),
            workaround_text: text.as_deref(),
            cause_kind: kind.as_str(),
            cause_provider: provider.as_deref(),
            cause_external_reference: external_reference.as_deref(),
            commander: commander.as_deref(),
            labels: Json(labels),
            related_incident_ids: Json(related_incident_ids),
            root_cause: root_cause.as_deref(),
            resolution_summary: resolution_summary.as_deref(),
            reopen_count: *reopen_count,
            started_at: DbTime(*started_at),
            detected_at: DbTime(*detected_at),
            acknowledged_at: time(*acknowledged_at),
            acknowledged_by: acknowledged_by.as_deref(),
            identified_at: time(*identified_at),
            mitigated_at: time(*mitigated_at),
            resolved_at: time(*resolved_at),
            closed_at: time(*closed_at),
            created_at: DbTime(*created_at),
            updated_at: DbTime(*updated_at),
            version: *version,
            merged_into: merged_into.map(DbId),
        }
    }
}

impl TryFrom<IncidentRow> for Incident {
    type Error = Error;
    fn try_from(row: IncidentRow) -> Result<Incident> {
        let IncidentRow {
            id,
            reference_number,
            title,
            summary,
            severity,
            status,
            impact,
            affected_components,
            affected_customers,
            eta,
            workaround_availability,
            workaround_text,
            cause_kind,
            cause_provider,
            cause_external_reference,
            commander,
            labels,
            related_incident_ids,
            root_cause,
            resolution_summary,
            reopen_count,
            started_at,
            detected_at,
            acknowledged_at,
            acknowledged_by,
            identified_at,
            mitigated_at,
            resolved_at,
            closed_at,
            created_at,
            updated_at,
            version,
            merged_into,
        } = row;
        Ok(Incident {
            id: id.0,
            reference: IncidentRef(reference_number),
            title,
            summary,
            severity: parse("severity", &severity)?,
            status: parse("status", &status)?,
            impact: parse("impact", &impact)?,
            affected_components: affected_components.0,
            affected_customers,
            eta: untime(eta),
            workaround: Workaround {
                availability: parse("workaround_availability", &workaround_availability)?,
                text: workaround_text,
            },
            cause: Cause {
                kind: parse("cause_kind", &cause_kind)?,
                provider: cause_provider,
                external_reference: cause_external_reference,
            },
            commander,
            labels: labels.0,
            related_incident_ids: related_incident_ids.0,
            root_cause,
            resolution_summary,
            reopen_count,
            started_at: started_at.0,
            detected_at: detected_at.0,
            acknowledged_at: untime(acknowledged_at),
            acknowledged_by,
            identified_at: untime(identified_at),
            mitigated_at: untime(mitigated_at),
            resolved_at: untime(resolved_at),
            closed_at: untime(closed_at),
            created_at: created_at.0,
            updated_at: updated_at.0,
            version,
            merged_into: merged_into.map(|m| m.0),
        })
    }
}

/// `SELECT <incident columns> FROM incidents` and nothing more.
pub static SELECT_INCIDENTS: LazyLock<String> = LazyLock::new(|| select_sql(IncidentRow::COLUMNS, "incidents", ""));
pub static SELECT_INCIDENT_BY_ID: LazyLock<String> = LazyLock::new(|| format!("{}WHERE id = $1", *SELECT_INCIDENTS));
pub static SELECT_INCIDENT_BY_REF: LazyLock<String> =
    LazyLock::new(|| format!("{}WHERE reference_number = $1", *SELECT_INCIDENTS));
/// Inserts the written columns and then `extra` (bound after them).
pub fn insert_incident_sql(extra: &[&str]) -> String {
    let columns: Vec<&str> = IncidentWrite::COLUMNS.iter().chain(extra).copied().collect();
    insert_sql("incidents", &columns)
}
pub static UPDATE_INCIDENT: LazyLock<String> = LazyLock::new(|| super::update_sql("incidents", IncidentWrite::COLUMNS));
pub const DELETE_INCIDENT: &str = "DELETE FROM incidents WHERE id = $1";
pub const DELETE_INCIDENT_COMPONENTS: &str = "DELETE FROM incident_components WHERE incident_id = $1";

/// The parts of the incident list each backend writes its own way.
pub trait Dialect: Database {
    /// ` AND <column>` is one of `values`.
    fn push_any_of(q: &mut QueryBuilder<Self>, column: &str, values: Vec<&'static str>);
    /// ` AND` the incident's search text contains `term` (already case-folded).
    fn push_search_term(q: &mut QueryBuilder<Self>, term: &str);
}

/// Incidents matching the filter, newest first, after the page token.
pub fn incidents_query<DB>(filter: &IncidentFilter, after: Option<&PageToken>, limit: u32) -> Result<QueryBuilder<DB>>
where
    DB: Dialect,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let IncidentFilter { statuses, severities, component_id, open, terms, created_after, created_before } = filter;
    let mut q = QueryBuilder::<DB>::new(format!("{}WHERE 1 = 1", *SELECT_INCIDENTS));
    if !statuses.is_empty() {
        DB::push_any_of(&mut q, "status", statuses.iter().map(|s| s.as_str()).collect());
    }
    if !severities.is_empty() {
        DB::push_any_of(&mut q, "severity", severities.iter().map(|s| s.as_str()).collect());
    }
    match open {
        Some(true) => q.push(format!(" AND status IN {}", *OPEN_STATUSES)),
        Some(false) => q.push(format!(" AND status NOT IN {}", *OPEN_STATUSES)),
        None => &mut q,
    };
    if let Some(c) = component_id {
        q.push(" AND EXISTS (SELECT 1 FROM incident_components ic WHERE ic.incident_id = incidents.id AND ic.component_id = ")
            .push_bind(DbId(*c))
            .push(")");
    }
    for term in terms {
        DB::push_search_term(&mut q, term);
    }
    if let Some(t) = created_after {
        q.push(" AND created_at > ").push_bind(DbTime(*t));
    }
    if let Some(t) = created_before {
        q.push(" AND created_at < ").push_bind(DbTime(*t));
    }
    push_newest_first(&mut q, "created_at", after, limit)?;
    Ok(q)
}

read_row! {
    /// A timeline entry as read.
    pub struct TimelineRow {
        id: DbId,
        incident_id: DbId,
        kind: String,
        body: String,
        visibility: String,
        status_from: Option<String>,
        status_to: Option<String>,
        changes: Json<Vec<FieldChange>>,
        author: String,
        created_at: DbTime,
    }
}

write_row! {
    /// A timeline entry as written.
    pub struct TimelineWrite<'a> {
        id: DbId,
        incident_id: DbId,
        kind: &'a str,
        body: &'a str,
        visibility: &'a str,
        status_from: Option<&'a str>,
        status_to: Option<&'a str>,
        changes: Json<&'a Vec<FieldChange>>,
        author: &'a str,
        created_at: DbTime,
    }
}

impl<'a> From<&'a TimelineEntry> for TimelineWrite<'a> {
    fn from(entry: &'a TimelineEntry) -> Self {
        let TimelineEntry {
            id,
            incident_id,
            kind,
            body,
            visibility,
            status_from,
            status_to,
            changes,
            author,
            created_at,
        } = entry;
        TimelineWrite {
            id: DbId(*id),
            incident_id: DbId(*incident_id),
            kind: kind.as_str(),
            body,
            visibility: visibility.as_str(),
            status_from: status_from.map(|s| s.as_str()),
            status_to: status_to.map(|s| s.as_str()),
            changes: Json(changes),
            author,
            created_at: DbTime(*created_at),
        }
    }
}

impl TryFrom<TimelineRow> for TimelineEntry {
    type Error = Error;
    fn try_from(row: TimelineRow) -> Result<TimelineEntry> {
        let TimelineRow {
            id,
            incident_id,
            kind,
            body,
            visibility,
            status_from,
            status_to,
            changes,
            author,
            created_at,
        } = row;
        Ok(TimelineEntry {
            id: id.0,
            incident_id: incident_id.0,
            kind: parse("kind", &kind)?,
            body,
            visibility: parse("visibility", &visibility)?,
            status_from: parse_opt("status_from", status_from.as_deref())?,
            status_to: parse_opt("status_to", status_to.as_deref())?,
            changes: changes.0,
            author,
            created_at: created_at.0,
        })
    }
}

pub const TIMELINE_TABLE: &str = "incident_updates";
pub static INSERT_TIMELINE_ENTRY: LazyLock<String> =
    LazyLock::new(|| insert_sql(TIMELINE_TABLE, TimelineWrite::COLUMNS));

/// The timeline entries of the incidents `ids_in_1` selects (the backend's test of
/// `incident_id` against the list bound to `$1`), oldest first.
pub fn timelines_sql(ids_in_1: &str) -> String {
    select_sql(TimelineRow::COLUMNS, TIMELINE_TABLE, &format!("WHERE {ids_in_1} ORDER BY created_at, id"))
}

/// The timeline of one incident, oldest first, after the page token.
pub fn timeline_query<DB>(
    incident_id: Uuid,
    visibility: Option<Visibility>,
    after: Option<&PageToken>,
    limit: u32,
) -> Result<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
    for<'t> &'static str: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(select_sql(TimelineRow::COLUMNS, TIMELINE_TABLE, "WHERE incident_id = "));
    q.push_bind(DbId(incident_id));
    if let Some(v) = visibility {
        q.push(" AND visibility = ").push_bind(v.as_str());
    }
    push_oldest_first(&mut q, after, limit)?;
    Ok(q)
}

/// Matches the ids and references of `keys` against the `(id, reference)` pairs found.
pub fn match_keys(keys: &[crate::domain::IncidentKey], found: &[(DbId, i64)]) -> Vec<Option<Uuid>> {
    use crate::domain::IncidentKey;
    keys.iter()
        .map(|k| {
            found
                .iter()
                .find(|(id, n)| match k {
                    IncidentKey::Id(want) => id.0 == *want,
                    IncidentKey::Ref(r) => *n == r.0,
                })
                .map(|(id, _)| id.0)
        })
        .collect()
}

/// The ids and the reference numbers among `keys`.
pub fn split_keys(keys: &[crate::domain::IncidentKey]) -> (Vec<Uuid>, Vec<i64>) {
    use crate::domain::IncidentKey;
    let ids = keys.iter().filter_map(|k| if let IncidentKey::Id(id) = k { Some(*id) } else { None }).collect();
    let refs = keys.iter().filter_map(|k| if let IncidentKey::Ref(r) = k { Some(r.0) } else { None }).collect();
    (ids, refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_read_column_but_the_reference_is_written_and_the_derived_ones_only_written() {
        let read: Vec<&str> = IncidentRow::COLUMNS.iter().copied().filter(|c| *c != "reference_number").collect();
        let written: Vec<&str> =
            IncidentWrite::COLUMNS.iter().copied().filter(|c| !["search_text", "component_ids"].contains(c)).collect();
        assert_eq!(read, written);
        assert_eq!(TimelineRow::COLUMNS, TimelineWrite::COLUMNS);
    }
}
