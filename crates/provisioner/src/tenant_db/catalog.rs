//! The catalog queries of the checks, over either way into a tenant database: a connection,
//! or the Management API's SQL endpoint. Both answer rows as JSON objects, so each check
//! reads them one way.

use serde_json::{Map, Value};
use sqlx::postgres::PgRow;
use sqlx::{Column, PgConnection, Row, TypeInfo};

use super::TenantDbError;
use super::sql_endpoint::SqlEndpoint;
use super::target::Target;

/// Where the catalog queries go.
pub(crate) enum Catalog<'a> {
    Connection {
        conn: &'a mut PgConnection,
        target: &'a Target,
    },
    Endpoint(&'a SqlEndpoint),
}

impl Catalog<'_> {
    /// Runs one of the check queries, whose only parameter (`$1`) is the exposed schemas.
    pub(crate) async fn rows(
        &mut self,
        sql: &'static str,
        schemas: &[String],
        during: &'static str,
    ) -> Result<Vec<CatalogRow>, TenantDbError> {
        match self {
            Self::Connection { conn, target } => {
                let rows = sqlx::query(sql)
                    .bind(schemas)
                    .fetch_all(&mut **conn)
                    .await
                    .map_err(|e| target.database_error(during, &e))?;
                rows.iter()
                    .map(|row| {
                        pg_row_json(row)
                            .map(CatalogRow)
                            .map_err(|e| target.database_error(during, &e))
                    })
                    .collect()
            }
            Self::Endpoint(endpoint) => {
                let rows = endpoint
                    .rows(sql, &[Value::from(schemas.to_vec())], during)
                    .await?;
                rows.into_iter()
                    .map(|row| match row {
                        Value::Object(object) => Ok(CatalogRow(object)),
                        _ => Err(unreadable(during, "a row that is not an object")),
                    })
                    .collect()
            }
        }
    }
}

fn unreadable(during: &'static str, what: &str) -> TenantDbError {
    TenantDbError::Database {
        during,
        message: format!("the answer held {what}"),
        code: None,
    }
}

/// One row of a check query.
pub(crate) struct CatalogRow(Map<String, Value>);

impl CatalogRow {
    pub(crate) fn text(&self, column: &str, during: &'static str) -> Result<String, TenantDbError> {
        match self.0.get(column) {
            Some(Value::String(text)) => Ok(text.clone()),
            _ => Err(unreadable(during, &format!("no text in column {column}"))),
        }
    }

    pub(crate) fn maybe_text(
        &self,
        column: &str,
        during: &'static str,
    ) -> Result<Option<String>, TenantDbError> {
        match self.0.get(column) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(unreadable(during, &format!("no text in column {column}"))),
        }
    }

    pub(crate) fn flag(&self, column: &str, during: &'static str) -> Result<bool, TenantDbError> {
        match self.0.get(column) {
            Some(Value::Bool(flag)) => Ok(*flag),
            _ => Err(unreadable(
                during,
                &format!("no boolean in column {column}"),
            )),
        }
    }
}

/// A row of the check queries (text, booleans and integers only) as a JSON object.
fn pg_row_json(row: &PgRow) -> Result<Map<String, Value>, sqlx::Error> {
    let mut object = Map::new();
    for (index, column) in row.columns().iter().enumerate() {
        let value = match column.type_info().name() {
            "BOOL" => row
                .try_get::<Option<bool>, _>(index)?
                .map_or(Value::Null, Value::Bool),
            "INT2" => row
                .try_get::<Option<i16>, _>(index)?
                .map_or(Value::Null, Value::from),
            "INT4" => row
                .try_get::<Option<i32>, _>(index)?
                .map_or(Value::Null, Value::from),
            "INT8" => row
                .try_get::<Option<i64>, _>(index)?
                .map_or(Value::Null, Value::from),
            _ => row
                .try_get::<Option<String>, _>(index)?
                .map_or(Value::Null, Value::String),
        };
        object.insert(column.name().to_owned(), value);
    }
    Ok(object)
}
