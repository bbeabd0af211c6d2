//! Postmortems: rows, conversions and the statements both backends share.

use std::sync::LazyLock;

use sqlx::types::Json;

use super::{
    DbId, DbTime, insert_declared_sql, parse, parse_opt, read_row, select_sql, time, untime, update_sql, write_row,
};
use crate::domain::postmortem::Postmortem;
use crate::domain::{Error, Result};

read_row! {
    /// A postmortem as read.
    pub struct PostmortemRow {
        incident_id: DbId,
        status: String,
        body: String,
        public_summary: String,
        root_cause_category: String,
        contributing_factors: Json<Vec<String>>,
        recurrence_risk: Option<String>,
        recurrence_reason: Option<String>,
        third_party: bool,
        author: String,
        published_at: Option<DbTime>,
        created_at: DbTime,
        updated_at: DbTime,
        version: i64,
    }
}

write_row! {
    /// A postmortem as written.
    pub struct PostmortemWrite<'a> {
        incident_id: DbId,
        status: &'a str,
        body: &'a str,
        public_summary: &'a str,
        root_cause_category: &'a str,
        contributing_factors: Json<&'a Vec<String>>,
        recurrence_risk: Option<&'a str>,
        recurrence_reason: Option<&'a str>,
        third_party: bool,
        author: &'a str,
        published_at: Option<DbTime>,
        created_at: DbTime,
        updated_at: DbTime,
        version: i64,
    }
}

impl<'a> From<&'a Postmortem> for PostmortemWrite<'a> {
    fn from(p: &'a Postmortem) -> Self {
        let Postmortem {
            incident_id,
            status,
            body,
            public_summary,
            root_cause_category,
            contributing_factors,
            recurrence_risk,
            recurrence_reason,
            third_party,
            author,
            published_at,
            created_at,
            updated_at,
            version,
        } = p;
        PostmortemWrite {
            incident_id: DbId(*incident_id),
            status: status.as_str(),
            body,
            public_summary,
            root_cause_category: root_cause_category.as_str(),
            contributing_factors: Json(contributing_factors),
            recurrence_risk: recurrence_risk.map(|r| r.as_str()),
            recurrence_reason: recurrence_reason.as_deref(),
            third_party: *third_party,
            author,
            published_at: time(*published_at),
            created_at: DbTime(*created_at),
            updated_at: DbTime(*updated_at),
            version: *version,
        }
    }
}

impl TryFrom<PostmortemRow> for Postmortem {
    type Error = Error;
    fn try_from(row: PostmortemRow) -> Result<Postmortem> {
        let PostmortemRow {
            incident_id,
            status,
            body,
            public_summary,
            root_cause_category,
            contributing_factors,
            recurrence_risk,
            recurrence_reason,
            third_party,
            author,
            published_at,
            created_at,
            updated_at,
            version,
        } = row;
        Ok(Postmortem {
            incident_id: incident_id.0,
            status: parse("status", &status)?,
            body,
            public_summary,
            root_cause_category: parse("root_cause_category", &root_cause_category)?,
            contributing_factors: contributing_factors.0,
            recurrence_risk: parse_opt("recurrence_risk", recurrence_risk.as_deref())?,
            recurrence_reason,
            third_party,
            author,
            published_at: untime(published_at),
            created_at: created_at.0,
            updated_at: updated_at.0,
            version,
        })
    }
}

pub const POSTMORTEM_TABLE: &str = "postmortems";
pub static SELECT_POSTMORTEM: LazyLock<String> =
    LazyLock::new(|| select_sql(PostmortemRow::COLUMNS, POSTMORTEM_TABLE, "WHERE incident_id = $1"));
/// With the incident's declaration time (the incident is `$1`).
pub static INSERT_POSTMORTEM: LazyLock<String> =
    LazyLock::new(|| insert_declared_sql(POSTMORTEM_TABLE, PostmortemWrite::COLUMNS, 1));
pub static UPDATE_POSTMORTEM: LazyLock<String> =
    LazyLock::new(|| update_sql(POSTMORTEM_TABLE, PostmortemWrite::COLUMNS));

/// The published postmortems of the incidents `ids_in_1` selects (the backend's test of
/// `incident_id` against the list bound to `$1`).
pub fn published_sql(ids_in_1: &str) -> String {
    select_sql(PostmortemRow::COLUMNS, POSTMORTEM_TABLE, &format!("WHERE {ids_in_1} AND status = 'published'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_read_is_written() {
        assert_eq!(PostmortemRow::COLUMNS, PostmortemWrite::COLUMNS);
        assert_eq!(PostmortemWrite::COLUMNS[0], "incident_id", "the insert reads the declaration time of $1");
    }
}
