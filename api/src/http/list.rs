//! List endpoints: `limit`/`cursor` paging, `filters`, `order` and `count`, as Studio does them.
//!
//! - `limit`: 1..=1000, default 20 (larger values are capped at 1000).
//! - `cursor`: opaque to clients; `skipN` means "start after N rows". `Link: <...>; rel="next"` is sent
//!   only when the page is full, i.e. when a next page may exist.
//! - `filters`: JSON `[{"id": field, "value": v}]` over a per-resource whitelist of fields.
//! - `order`: `field-true` (descending) or `field-false` (ascending), comma separated.
//! - `count=1`: adds `X-Total-Count`.

use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AssertSqlSafe, Row};

use crate::db::Database;
use utoipa::IntoParams;

use crate::error::ApiError;

/// The query parameters every list endpoint accepts.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 1000 (default 20; larger values are capped).
    #[param(value_type = Option<i64>, minimum = 1)]
    pub limit: Option<String>,
    /// The cursor from the previous page's `Link` header.
    #[param(pattern = "^(skip[0-9]+)?$")]
    pub cursor: Option<String>,
    /// URL-encoded JSON array of `{"id": field, "value": value}`.
    pub filters: Option<String>,
    /// Comma-separated `field-true` (descending) / `field-false` (ascending).
    pub order: Option<String>,
    /// `1` or `true` adds the `X-Total-Count` header.
    pub count: Option<String>,
}

/// How a filterable field is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Equality with a string.
    Text,
    /// Case-insensitive substring match.
    FullText,
    /// Equality with a JSON boolean (stored as 0/1).
    Bool,
    /// A number, or `{"gt","gte","lt","lte"}` bounds.
    Number,
}

/// A field clients may filter and order by, and the column behind it.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub id: &'static str,
    pub column: &'static str,
    pub kind: FieldKind,
}

pub const fn field(id: &'static str, column: &'static str, kind: FieldKind) -> Field {
    Field { id, column, kind }
}

/// The list behaviour of one resource.
pub struct ListSpec {
    pub fields: &'static [Field],
    /// ORDER BY used when `order` names no known field.
    pub default_order: &'static [(&'static str, bool)],
}

/// A value bound to a `$N` placeholder.
#[derive(Debug, Clone)]
pub enum Arg {
    Text(String),
    Int(i64),
    Real(f64),
    Null,
}

impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(v.to_string())
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(v)
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Arg {
        Arg::Text(v.clone())
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(v)
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Arg {
        Arg::Int(v as i64)
    }
}
impl From<f64> for Arg {
    fn from(v: f64) -> Arg {
        Arg::Real(v)
    }
}
impl<T: Into<Arg>> From<Option<T>> for Arg {
    fn from(v: Option<T>) -> Arg {
        v.map(Into::into).unwrap_or(Arg::Null)
    }
}

/// SQL text with its arguments, numbered `$1..$N` in order of appearance (which both SQLite and
/// PostgreSQL bind positionally).
#[derive(Debug, Default, Clone)]
pub struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    pub fn new(text: &str) -> Sql {
        Sql {
            text: text.to_string(),
            args: Vec::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder for `arg`.
    pub fn bind(&mut self, arg: impl Into<Arg>) -> &mut Sql {
        self.args.push(arg.into());
        self.text.push_str(&format!("${}", self.args.len()));
        self
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// `prefix` (which has no placeholders) followed by `rest`.
    pub fn after(prefix: &str, rest: &Sql) -> Sql {
        Sql {
            text: format!("{prefix}{}", rest.text),
            args: rest.args.clone(),
        }
    }

    /// The query, ready to execute.
    pub fn query(&self) -> sqlx::query::Query<'static, Any, AnyArguments> {
        let mut query = sqlx::query(AssertSqlSafe(self.text.clone()));
        for arg in &self.args {
            query = match arg {
                Arg::Text(v) => query.bind(v.clone()),
                Arg::Int(v) => query.bind(*v),
                Arg::Real(v) => query.bind(*v),
                Arg::Null => query.bind(Option::<String>::None),
            };
        }
        query
    }
}

/// What a list query learned besides its rows.
#[derive(Debug, Clone, Copy)]
pub struct PageInfo {
    /// Rows matching the filters, when `count` was asked for.
    pub total: Option<i64>,
    /// Whether rows follow this page.
    pub more: bool,
}

/// A parsed list request.
#[derive(Debug)]
pub struct ListRequest {
    pub limit: i64,
    pub offset: i64,
    pub count: bool,
    filters: Vec<(Field, serde_json::Value)>,
    order: Vec<(&'static str, bool)>,
}

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 1000;
const MAX_FILTERS: usize = 32;
const MAX_FILTERS_LEN: usize = 8192;

impl ListRequest {
    pub fn parse(params: &ListParams, spec: &ListSpec) -> Result<ListRequest, ApiError> {
        let limit = match params.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(text) => match text.parse::<i64>() {
                Ok(n) if n >= 1 => n.min(MAX_LIMIT),
                _ => {
                    return Err(ApiError::invalid(format!(
                        "limit must be an integer from 1 to {MAX_LIMIT}"
                    )));
                }
            },
        };
        let offset = match params.cursor.as_deref() {
            None | Some("") => 0,
            Some(cursor) => cursor
                .strip_prefix("skip")
                .and_then(|n| n.parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::invalid("cursor is not one this server issued: use the Link header of the previous page"))?,
        };
        let count = matches!(params.count.as_deref(), Some("1") | Some("true"));
        let filters = match params.filters.as_deref() {
            None | Some("") => Vec::new(),
            Some(text) => parse_filters(text, spec)?,
        };
        let mut order = Vec::new();
        if let Some(text) = params.order.as_deref() {
            for part in text.split(',').take(8) {
                let (name, desc) = match part.rsplit_once('-') {
                    Some((name, "true")) => (name, true),
                    Some((name, "false")) => (name, false),
                    _ => (part, false),
                };
                if let Some(field) = spec.fields.iter().find(|f| f.id == name.trim()) {
                    order.push((field.column, desc));
                }
            }
        }
        if order.is_empty() {
            order.extend_from_slice(spec.default_order);
        }
        Ok(ListRequest {
            limit,
            offset,
            count,
            filters,
            order,
        })
    }

    /// Appends ` AND ...` for every filter.
    pub fn push_filters(&self, sql: &mut Sql) {
        for (field, value) in &self.filters {
            let column = field.column;
            match (field.kind, value) {
                (FieldKind::FullText, serde_json::Value::String(s)) => {
                    sql.push(&format!(" AND LOWER({column}) LIKE "));
                    sql.bind(format!("%{}%", escape_like(&s.to_lowercase())));
                    sql.push(" ESCAPE '\\'");
                }
                (FieldKind::Text, v) => {
                    sql.push(&format!(" AND {column} = "));
                    sql.bind(scalar_text(v));
                }
                (FieldKind::Bool, serde_json::Value::Bool(b)) => {
                    sql.push(&format!(" AND {column} = "));
                    sql.bind(*b);
                }
                (FieldKind::Number, serde_json::Value::Number(n)) => {
                    sql.push(&format!(" AND {column} = "));
                    sql.bind(n.as_f64().unwrap_or(0.0));
                }
                (FieldKind::Number, serde_json::Value::Object(bounds)) => {
                    for (op, v) in bounds {
                        let sym = match op.as_str() {
                            "gt" => ">",
                            "gte" => ">=",
                            "lt" => "<",
                            "lte" => "<=",
                            _ => "=",
                        };
                        sql.push(&format!(" AND {column} {sym} "));
                        sql.bind(v.as_f64().unwrap_or(0.0));
                    }
                }
                _ => unreachable!("parse_filters admits only these shapes"),
            }
        }
    }

    /// Appends ORDER BY, LIMIT and OFFSET (with `id` as the last key, so pages never overlap).
    pub fn push_order_and_page(&self, sql: &mut Sql) {
        let mut keys: Vec<String> = self
            .order
            .iter()
            .map(|(col, desc)| format!("{col} {}", if *desc { "DESC" } else { "ASC" }))
            .collect();
        keys.push("id ASC".into());
        sql.push(&format!(
            " ORDER BY {} LIMIT {} OFFSET {}",
            keys.join(", "),
            self.limit + 1,
            self.offset
        ));
    }

    /// Runs `SELECT {columns} FROM {table}{where_clause}` with the filters, order and page of this
    /// request, and the matching count when `count` was asked for. `where_clause` holds the scope
    /// (always the project) and starts with ` WHERE`. One row more than the page is read to know
    /// whether a next page exists.
    pub async fn fetch(
        &self,
        db: &Database,
        columns: &str,
        table: &str,
        mut where_clause: Sql,
    ) -> Result<(Vec<AnyRow>, PageInfo), sqlx::Error> {
        self.push_filters(&mut where_clause);
        let mut page = Sql::after(&format!("SELECT {columns} FROM {table}"), &where_clause);
        self.push_order_and_page(&mut page);
        let mut rows = page.query().fetch_all(db.reader()).await?;
        let more = rows.len() as i64 > self.limit;
        rows.truncate(self.limit as usize);
        let total = if self.count {
            let count = Sql::after(&format!("SELECT COUNT(*) FROM {table}"), &where_clause);
            Some(
                count
                    .query()
                    .fetch_one(db.reader())
                    .await?
                    .try_get::<i64, _>(0)?,
            )
        } else {
            None
        };
        Ok((rows, PageInfo { total, more }))
    }

    /// The response: a bare JSON array, `Link` when a next page exists, `X-Total-Count` when asked.
    pub fn respond<T: Serialize>(
        &self,
        items: Vec<T>,
        page: PageInfo,
        uri: &Uri,
        public_url: &str,
    ) -> Response {
        let mut headers = HeaderMap::new();
        let total = page.total;
        if page.more {
            let next = next_page_url(uri, public_url, self.offset + self.limit);
            if let Ok(value) = HeaderValue::from_str(&format!("<{next}>; rel=\"next\"")) {
                headers.insert(axum::http::header::LINK, value);
            }
        }
        if let Some(total) = total {
            headers.insert("x-total-count", HeaderValue::from(total));
        }
        (headers, axum::Json(items)).into_response()
    }
}

fn parse_filters(text: &str, spec: &ListSpec) -> Result<Vec<(Field, serde_json::Value)>, ApiError> {
    let fail = |why: String| ApiError::BadRequest(format!("error parsing filters: {why}"));
    if text.len() > MAX_FILTERS_LEN {
        return Err(fail(format!(
            "filters must be at most {MAX_FILTERS_LEN} characters"
        )));
    }
    #[derive(Deserialize)]
    struct Filter {
        id: String,
        value: serde_json::Value,
    }
    let filters: Vec<Filter> = serde_json::from_str(text).map_err(|_| {
        fail("filters must be a JSON array of {\"id\": field, \"value\": value}".into())
    })?;
    if filters.len() > MAX_FILTERS {
        return Err(fail(format!("at most {MAX_FILTERS} filters")));
    }
    let mut out = Vec::with_capacity(filters.len());
    for filter in filters {
        let Some(field) = spec.fields.iter().find(|f| f.id == filter.id) else {
            let known: Vec<&str> = spec.fields.iter().map(|f| f.id).collect();
            let id: String = filter.id.chars().take(64).collect();
            return Err(fail(format!(
                "unknown field: {id:?} (known: {})",
                known.join(", ")
            )));
        };
        let ok = match (field.kind, &filter.value) {
            (FieldKind::FullText, serde_json::Value::String(_)) => true,
            (FieldKind::Text, v) => v.is_string() || v.is_number() || v.is_boolean(),
            (FieldKind::Bool, v) => v.is_boolean(),
            (FieldKind::Number, v) if v.is_number() => true,
            (FieldKind::Number, serde_json::Value::Object(bounds)) => {
                !bounds.is_empty()
                    && bounds.iter().all(|(k, v)| {
                        matches!(k.as_str(), "gt" | "gte" | "lt" | "lte") && v.is_number()
                    })
            }
            _ => false,
        };
        if !ok {
            let expected = match field.kind {
                FieldKind::Text | FieldKind::FullText => "a string",
                FieldKind::Bool => "a boolean",
                FieldKind::Number => "a number or an object with gt, gte, lt or lte numbers",
            };
            return Err(fail(format!(
                "the value of {} must be {expected}",
                field.id
            )));
        }
        out.push((*field, filter.value));
    }
    Ok(out)
}

fn scalar_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn next_page_url(uri: &Uri, public_url: &str, offset: i64) -> String {
    let mut pairs: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .filter(|(k, _)| k != "cursor")
                .collect()
        })
        .unwrap_or_default();
    pairs.push(("cursor".into(), format!("skip{offset}")));
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{public_url}{}?{query}", uri.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: ListSpec = ListSpec {
        fields: &[
            field("name", "name", FieldKind::FullText),
            field("isActive", "is_active", FieldKind::Bool),
            field("createdAt", "created_at", FieldKind::Number),
        ],
        default_order: &[("created_at", true)],
    };

    fn params(q: &str) -> ListParams {
        let mut p = ListParams::default();
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            let v = Some(v.into_owned());
            match k.as_ref() {
                "limit" => p.limit = v,
                "cursor" => p.cursor = v,
                "filters" => p.filters = v,
                "order" => p.order = v,
                "count" => p.count = v,
                _ => {}
            }
        }
        p
    }

    #[test]
    fn builds_filters_and_order() {
        let q = params(
            r#"limit=5&cursor=skip10&order=name-false&filters=[{"id":"name","value":"Cam_1"},{"id":"createdAt","value":{"gt":5}},{"id":"isActive","value":true}]"#,
        );
        let req = ListRequest::parse(&q, &SPEC).unwrap();
        let mut sql = Sql::new("SELECT * FROM t WHERE project_id = ");
        sql.bind("p");
        req.push_filters(&mut sql);
        req.push_order_and_page(&mut sql);
        assert_eq!(
            sql.text(),
            "SELECT * FROM t WHERE project_id = $1 AND LOWER(name) LIKE $2 ESCAPE '\\' AND created_at > $3 AND is_active = $4 ORDER BY name ASC, id ASC LIMIT 6 OFFSET 10"
        );
        assert!(matches!(&sql.args[1], Arg::Text(s) if s == "%cam\\_1%"));
    }

    #[test]
    fn rejects_unknown_fields_and_bad_values() {
        let unknown =
            ListRequest::parse(&params(r#"filters=[{"id":"secret","value":"x"}]"#), &SPEC)
                .unwrap_err();
        assert!(unknown.to_string().contains("unknown field: \"secret\""));
        let bad = ListRequest::parse(
            &params(r#"filters=[{"id":"isActive","value":"yes"}]"#),
            &SPEC,
        )
        .unwrap_err();
        assert_eq!(
            bad.to_string(),
            "error parsing filters: the value of isActive must be a boolean"
        );
        assert!(ListRequest::parse(&params("limit=abc"), &SPEC).is_err());
        assert_eq!(
            ListRequest::parse(&params("limit=5000"), &SPEC)
                .unwrap()
                .limit,
            1000
        );
    }

    #[test]
    fn next_link_replaces_the_cursor() {
        let uri: Uri = "/api/stream?limit=2&cursor=skip2&count=1".parse().unwrap();
        assert_eq!(
            next_page_url(&uri, "http://h:1", 4),
            "http://h:1/api/stream?limit=2&count=1&cursor=skip4"
        );
    }
}
