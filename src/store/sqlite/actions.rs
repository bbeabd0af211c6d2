//! Follow-up actions on SQLite (due dates are ISO date text, which sorts as dates).

use async_trait::async_trait;
use chrono::NaiveDate;
use uuid::Uuid;

use super::{SqliteStore, SqliteTx, db_err};
use crate::domain::Result;
use crate::domain::action::Action;
use crate::domain::page::PageToken;
use crate::domain::query::ActionFilter;
use crate::store::sql::DbId;
use crate::store::sql::actions::{
    ANY_OVERDUE, ActionRow, ActionWrite, DELETE_ACTION, INSERT_ACTION, MARK_OVERDUE_NOTIFIED, NEXT_OVERDUE,
    SELECT_ACTION, UPDATE_ACTION, actions_query,
};
use crate::store::{ActionStore, ActionTx};

/// The sort key of a due date (the index `actions_order_idx` is on this expression).
const DUE_KEY: &str = "coalesce(due_date, '9999-12-31')";

#[async_trait]
impl ActionStore for SqliteStore {
    async fn get_action(&self, id: Uuid) -> Result<Option<Action>> {
        super::by_id::<ActionRow, _>(&self.readers, SELECT_ACTION.as_str(), id).await
    }

    async fn list_actions(&self, filter: &ActionFilter, after: Option<&PageToken>, limit: u32) -> Result<Vec<Action>> {
        super::list::<ActionRow, _>(&self.readers, actions_query(filter, DUE_KEY, after, limit)).await
    }

    async fn overdue_actions_due(&self, today: NaiveDate) -> Result<bool> {
        let (due,): (bool,) =
            sqlx::query_as(ANY_OVERDUE.as_str()).bind(today).fetch_one(&self.readers).await.map_err(db_err)?;
        Ok(due)
    }
}

#[async_trait]
impl ActionTx for SqliteTx {
    async fn insert_action(&mut self, a: &Action) -> Result<()> {
        ActionWrite::from(a).bind(sqlx::query(INSERT_ACTION.as_str())).execute(self.conn()).await.map_err(db_err)?;
        Ok(())
    }

    async fn lock_action(&mut self, id: Uuid) -> Result<Option<Action>> {
        let row: Option<ActionRow> =
            sqlx::query_as(SELECT_ACTION.as_str()).bind(DbId(id)).fetch_optional(self.conn()).await.map_err(db_err)?;
        row.map(Action::try_from).transpose()
    }

    async fn update_action(&mut self, a: &Action) -> Result<()> {
        ActionWrite::from(a).bind(sqlx::query(UPDATE_ACTION.as_str())).execute(self.conn()).await.map_err(db_err)?;
        Ok(())
    }

    async fn delete_action(&mut self, id: Uuid) -> Result<()> {
        sqlx::query(DELETE_ACTION).bind(DbId(id)).execute(self.conn()).await.map_err(db_err)?;
        Ok(())
    }

    async fn claim_overdue_action(&mut self, today: NaiveDate) -> Result<Option<Action>> {
        let conn = self.conn();
        let row: Option<ActionRow> =
            sqlx::query_as(NEXT_OVERDUE.as_str()).bind(today).fetch_optional(&mut *conn).await.map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        sqlx::query(MARK_OVERDUE_NOTIFIED).bind(row.id).execute(conn).await.map_err(db_err)?;
        Action::try_from(row).map(Some)
    }
}
