//! Components: rows, conversions and the statements both backends share.

use std::sync::LazyLock;

use sqlx::{Database, Encode, QueryBuilder, Type};

use super::{DbId, DbTexts, DbTime, foreign_token, insert_sql, parse, read_row, update_sql, write_row};
use crate::domain::component::effective_status;
use crate::domain::page::PageToken;
use crate::domain::{Component, ComponentStatus, Error, Result};

read_row! {
    /// A component with `imposed`: the statuses open incidents impose on it (each backend's
    /// [`select_components`] aggregates them its own way).
    pub struct ComponentRow {
        id: DbId,
        name: String,
        description: String,
        group_name: Option<String>,
        position: i32,
        status: String,
        created_at: DbTime,
        updated_at: DbTime,
        version: i64,
        imposed: DbTexts,
    }
}

write_row! {
    /// A component as written (with the folded keys it is unique by and sorted by).
    pub struct ComponentWrite<'a> {
        id: DbId,
        name: &'a str,
        name_key: String,
        description: &'a str,
        group_name: Option<&'a str>,
        group_key: String,
        position: i32,
        status: &'a str,
        created_at: DbTime,
        updated_at: DbTime,
        version: i64,
    }
}

impl<'a> From<&'a Component> for ComponentWrite<'a> {
    fn from(component: &'a Component) -> Self {
        let (name_key, group_key) = (component.name_key(), component.group_key());
        // The effective status is derived from the open incidents when read.
        let Component {
            id,
            name,
            description,
            group,
            position,
            status,
            effective_status: _,
            created_at,
            updated_at,
            version,
        } = component;
        ComponentWrite {
            id: DbId(*id),
            name,
            name_key,
            description,
            group_name: group.as_deref(),
            group_key,
            position: *position,
            status: status.as_str(),
            created_at: DbTime(*created_at),
            updated_at: DbTime(*updated_at),
            version: *version,
        }
    }
}

impl ComponentRow {
    /// The component and the statuses imposed on it.
    pub fn into_parts(self) -> Result<(Component, Vec<ComponentStatus>)> {
        let ComponentRow {
            id,
            name,
            description,
            group_name,
            position,
            status,
            created_at,
            updated_at,
            version,
            imposed,
        } = self;
        let status: ComponentStatus = parse("status", &status)?;
        let imposed = super::parse_all::<ComponentStatus>("imposed", &imposed.0)?;
        let component = Component {
            id: id.0,
            name,
            description,
            group: group_name,
            position,
            status,
            effective_status: effective_status(status, imposed.iter().copied()),
            created_at: created_at.0,
            updated_at: updated_at.0,
            version,
        };
        Ok((component, imposed))
    }
}

impl TryFrom<ComponentRow> for Component {
    type Error = Error;
    fn try_from(row: ComponentRow) -> Result<Component> {
        row.into_parts().map(|(c, _)| c)
    }
}

/// `SELECT <component columns>, <imposed> AS imposed FROM components c`: every column but
/// `imposed` from the table, `imposed` from the backend's aggregate of open impositions.
pub fn select_components(imposed: &str) -> String {
    let columns: Vec<String> =
        ComponentRow::COLUMNS.iter().filter(|c| **c != "imposed").map(|c| format!("c.{c}")).collect();
    format!("SELECT {}, {imposed} AS imposed FROM components c", columns.join(", "))
}

pub static INSERT_COMPONENT: LazyLock<String> = LazyLock::new(|| insert_sql("components", ComponentWrite::COLUMNS));
pub static UPDATE_COMPONENT: LazyLock<String> = LazyLock::new(|| update_sql("components", ComponentWrite::COLUMNS));
pub const DELETE_COMPONENT: &str = "DELETE FROM components WHERE id = $1";
pub const COUNT_OPEN_INCIDENTS_FOR_COMPONENT: &str =
    "SELECT count(*) FROM incident_components WHERE component_id = $1 AND incident_open";

/// Components in status-page order after the page token; `select` is the backend's
/// [`select_components`].
pub fn components_query<DB>(
    select: &str,
    group: Option<&str>,
    after: Option<&PageToken>,
    limit: u32,
) -> Result<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i32: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(format!("{select} WHERE 1 = 1"));
    if let Some(g) = group {
        q.push(" AND coalesce(c.group_name, '') = ").push_bind(g.to_string());
    }
    match after {
        Some(PageToken::Ordered { group_key, position, name_key, id }) => {
            q.push(" AND (c.group_key, c.position, c.name_key, c.id) > (")
                .push_bind(group_key.clone())
                .push(", ")
                .push_bind(*position)
                .push(", ")
                .push_bind(name_key.clone())
                .push(", ")
                .push_bind(DbId(*id))
                .push(")");
        }
        Some(_) => return Err(foreign_token()),
        None => {}
    }
    q.push(" ORDER BY c.group_key, c.position, c.name_key, c.id LIMIT ").push_bind(i64::from(limit));
    Ok(q)
}

/// A duplicate component name is `AlreadyExists`; other errors map with `db_err`.
pub fn name_taken(e: sqlx::Error, name: &str, db_err: fn(sqlx::Error) -> Error) -> Error {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            Error::AlreadyExists { resource: "component", field: "name", value: name.to_string() }
        }
        _ => db_err(e),
    }
}

/// Deleting a component an open incident affects is refused.
pub fn in_use(id: uuid::Uuid, open: i64) -> Error {
    Error::Conflict(format!(
        "component {id} is affected by {open} open incident(s); resolve them or remove the component from them first"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_component_select_reads_every_column_and_the_aggregate() {
        let sql = select_components("x");
        assert!(sql.starts_with("SELECT c.id, c.name, c.description, c.group_name, c.position, c.status, "), "{sql}");
        assert!(sql.ends_with("c.version, x AS imposed FROM components c"), "{sql}");
    }
}
