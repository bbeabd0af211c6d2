//! Typed links between incidents, and the moves of a merge: rows, conversions and the
//! statements both backends share.

use super::{DbId, DbTime, insert_sql, parse, read_row, write_row};
use crate::domain::ids::IncidentRef;
use crate::domain::link::{IncidentLink, Link, LinkedIncident};
use crate::domain::{Error, Result};

read_row! {
    /// A link as stored.
    pub struct IncidentLinkRow {
        id: DbId,
        from_incident_id: DbId,
        to_incident_id: DbId,
        kind: String,
        created_by: String,
        created_at: DbTime,
    }
}

write_row! {
    /// A link as written.
    pub struct IncidentLinkWrite<'a> {
        id: DbId,
        from_incident_id: DbId,
        to_incident_id: DbId,
        kind: &'a str,
        created_by: &'a str,
        created_at: DbTime,
    }
}

impl<'a> From<&'a IncidentLink> for IncidentLinkWrite<'a> {
    fn from(l: &'a IncidentLink) -> Self {
        let IncidentLink { id, from_incident_id, to_incident_id, kind, created_by, created_at } = l;
        IncidentLinkWrite {
            id: DbId(*id),
            from_incident_id: DbId(*from_incident_id),
            to_incident_id: DbId(*to_incident_id),
            kind: kind.as_str(),
            created_by,
            created_at: DbTime(*created_at),
        }
    }
}

impl TryFrom<IncidentLinkRow> for IncidentLink {
    type Error = Error;
    fn try_from(row: IncidentLinkRow) -> Result<IncidentLink> {
        let IncidentLinkRow { id, from_incident_id, to_incident_id, kind, created_by, created_at } = row;
        Ok(IncidentLink {
            id: id.0,
            from_incident_id: from_incident_id.0,
            to_incident_id: to_incident_id.0,
            kind: parse("kind", &kind)?,
            created_by,
            created_at: created_at.0,
        })
    }
}

read_row! {
    /// A link of an incident (`$1`) with the other incident's summary.
    pub struct LinkViewRow {
        id: DbId,
        from_incident_id: DbId,
        to_incident_id: DbId,
        kind: String,
        created_by: String,
        created_at: DbTime,
        other_reference: i64,
        other_title: String,
        other_status: String,
    }
}

/// Reads a [`LinkViewRow`] as the link `incident_id` sees.
pub fn link_view(incident_id: uuid::Uuid, row: LinkViewRow) -> Result<Link> {
    let LinkViewRow {
        id,
        from_incident_id,
        to_incident_id,
        kind,
        created_by,
        created_at,
        other_reference,
        other_title,
        other_status,
    } = row;
    let link = IncidentLink {
        id: id.0,
        from_incident_id: from_incident_id.0,
        to_incident_id: to_incident_id.0,
        kind: parse("kind", &kind)?,
        created_by,
        created_at: created_at.0,
    };
    let (kind, other) = link.seen_from(incident_id);
    Ok(Link {
        id: link.id,
        kind,
        incident: LinkedIncident {
            id: other,
            reference: IncidentRef(other_reference),
            title: other_title,
            status: parse("status", &other_status)?,
        },
        created_by: link.created_by,
        created_at: link.created_at,
    })
}

pub const LIST_LINKS: &str = "SELECT l.id, l.from_incident_id, l.to_incident_id, l.kind, l.created_by, l.created_at, \
     o.reference_number AS other_reference, o.title AS other_title, o.status AS other_status \
     FROM incident_links l JOIN incidents o \
       ON o.id = CASE WHEN l.from_incident_id = $1 THEN l.to_incident_id ELSE l.from_incident_id END \
     WHERE l.from_incident_id = $1 OR l.to_incident_id = $1 \
     ORDER BY l.created_at, l.id";
pub const SELECT_LINK: &str =
    "SELECT id, from_incident_id, to_incident_id, kind, created_by, created_at FROM incident_links WHERE id = $1";
pub const DELETE_LINK: &str = "DELETE FROM incident_links WHERE id = $1";
/// `$1` linked with kind `$3` to `$2`, or (`$4`, a symmetric kind) the other way round.
pub const LINK_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM incident_links WHERE kind = $3 \
     AND ((from_incident_id = $1 AND to_incident_id = $2) OR ($4 AND from_incident_id = $2 AND to_incident_id = $1)))";

pub fn insert_link_sql() -> String {
    insert_sql("incident_links", IncidentLinkWrite::COLUMNS)
}

/// What a merge of `$1` into `$2` runs, in order, each counted: the timeline, the alerts, the
/// alert groups (later alerts join the target), the actions, the links (those between the two
/// and those the target has already are dropped, then the rest re-pointed), the postmortem
/// (when the target has none), and the acknowledgement reminders (the duplicate is final).
pub const MERGE_STATEMENTS: &[(MergeStep, &str)] = &[
    (MergeStep::Timeline, "UPDATE incident_updates SET incident_id = $2 WHERE incident_id = $1"),
    (MergeStep::Alerts, "UPDATE alerts SET incident_id = $2 WHERE incident_id = $1"),
    (MergeStep::Other, "UPDATE alert_groups SET incident_id = $2 WHERE incident_id = $1"),
    (
        MergeStep::Actions,
        "UPDATE actions SET incident_id = $2, \
         incident_declared_at = (SELECT created_at FROM incidents WHERE id = $2) WHERE incident_id = $1",
    ),
    (
        MergeStep::Other,
        "DELETE FROM incident_links WHERE (from_incident_id = $1 AND to_incident_id = $2) \
         OR (from_incident_id = $2 AND to_incident_id = $1)",
    ),
    (
        MergeStep::Other,
        "DELETE FROM incident_links WHERE from_incident_id = $1 AND EXISTS (SELECT 1 FROM incident_links t \
         WHERE t.from_incident_id = $2 AND t.to_incident_id = incident_links.to_incident_id \
         AND t.kind = incident_links.kind)",
    ),
    (MergeStep::Links, "UPDATE incident_links SET from_incident_id = $2 WHERE from_incident_id = $1"),
    (
        MergeStep::Other,
        "DELETE FROM incident_links WHERE to_incident_id = $1 AND EXISTS (SELECT 1 FROM incident_links t \
         WHERE t.to_incident_id = $2 AND t.from_incident_id = incident_links.from_incident_id \
         AND t.kind = incident_links.kind)",
    ),
    (MergeStep::Links, "UPDATE incident_links SET to_incident_id = $2 WHERE to_incident_id = $1"),
    (
        MergeStep::Postmortem,
        "UPDATE postmortems SET incident_id = $2, \
         incident_declared_at = (SELECT created_at FROM incidents WHERE id = $2) WHERE incident_id = $1 \
         AND NOT EXISTS (SELECT 1 FROM postmortems p WHERE p.incident_id = $2)",
    ),
    (MergeStep::Other, "DELETE FROM ack_reminders WHERE incident_id = $1"),
];

/// Which count of [`crate::store::Moved`] a merge statement adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeStep {
    Timeline,
    Alerts,
    Actions,
    Links,
    Postmortem,
    Other,
}

impl MergeStep {
    /// Adds `rows` affected by this step to `moved`.
    pub fn count(self, moved: &mut crate::store::Moved, rows: u64) {
        match self {
            MergeStep::Timeline => moved.timeline_entries += rows,
            MergeStep::Alerts => moved.alerts += rows,
            MergeStep::Actions => moved.actions += rows,
            MergeStep::Links => moved.links += rows,
            MergeStep::Postmortem => moved.postmortem = rows > 0,
            MergeStep::Other => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_read_is_written() {
        assert_eq!(IncidentLinkRow::COLUMNS, IncidentLinkWrite::COLUMNS);
    }
}
