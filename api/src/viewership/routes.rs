//! `/data/views/...` and `/data/usage/query`: the viewership and usage APIs (Livepeer's analyzer
//! shapes), read from the hourly rollups and the recent viewer sessions.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::repo::{self, Dimension, RollupQuery, RollupRow, SqlBucket};
use crate::app::AppState;
use crate::auth::Principal;
use crate::clock::now_ms;
use crate::error::{ApiError, ApiResult, ErrorBody};

/// Viewers seen within this long count as watching now.
const NOW_WINDOW_MS: i64 = 30_000;
/// Most values a repeated parameter may have.
const MAX_REPEATS: usize = 20;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(query_views))
        .routes(routes!(query_creator_views))
        .routes(routes!(public_total))
        .routes(routes!(views_now))
        .routes(routes!(query_usage))
}

/// A row of viewership metrics: the breakdown's dimensions, the bucket, and the sums.
#[derive(Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ViewershipMetric)]
pub struct ViewershipMetric {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub playback_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creator_id: Option<String>,
    /// Start of the time bucket (unix ms), with `timeStep`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    pub view_count: i64,
    pub playtime_mins: f64,
    /// Mean time to first frame reported by players (their beacon).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttff_ms: Option<f64>,
    /// Time spent rebuffering over time spent watching, from players' beacons.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebuffer_ratio: Option<f64>,
    /// Share of beaconing viewers who hit an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// Share of beaconing viewers who left before the first frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exits_before_start: Option<f64>,
}

/// All-time views of a playback ID.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicViewership {
    pub playback_id: String,
    pub view_count: i64,
    pub playtime_mins: f64,
}

/// Viewers watching now.
#[derive(Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = RealtimeViewershipMetric)]
pub struct RealtimeViewershipMetric {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub playback_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    pub view_count: i64,
    pub error_rate: f64,
}

/// Minutes delivered, transcoded and stored.
#[derive(Debug, Default, Serialize, ToSchema)]
#[schema(as = UsageMetric)]
pub struct UsageMetric {
    #[serde(rename = "UserID")]
    pub user_id: String,
    #[serde(rename = "CreatorID", skip_serializing_if = "Option::is_none")]
    pub creator_id: Option<String>,
    /// Minutes of media viewers were served.
    #[serde(rename = "DeliveryUsageMins")]
    pub delivery_usage_mins: f64,
    /// Minutes of media transcoded (live renditions and VOD).
    #[serde(rename = "TotalUsageMins")]
    pub total_usage_mins: f64,
    /// Minutes of video stored (ready assets at the end of the range).
    #[serde(rename = "StorageUsageMins")]
    pub storage_usage_mins: f64,
}

/// The query parameters, as given (repeated ones in order).
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: Option<&str>) -> Params {
        Params(
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .take(100)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> ApiResult<Vec<&str>> {
        let values: Vec<&str> = self
            .0
            .iter()
            .filter(|(k, _)| k == name || k == name.trim_end_matches("[]"))
            .map(|(_, v)| v.as_str())
            .collect();
        if values.len() > MAX_REPEATS {
            return Err(ApiError::BadRequest(format!(
                "at most {MAX_REPEATS} values of {name}"
            )));
        }
        Ok(values)
    }

    /// A time: RFC 3339 or unix milliseconds.
    fn time(&self, name: &str) -> ApiResult<Option<i64>> {
        let Some(value) = self.one(name) else {
            return Ok(None);
        };
        if let Ok(ms) = value.parse::<i64>() {
            return Ok(Some(ms));
        }
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
            .map(|t| Some((t.unix_timestamp_nanos() / 1_000_000) as i64))
            .map_err(|_| {
                ApiError::BadRequest(format!(
                    "{name} must be an RFC 3339 time or unix milliseconds"
                ))
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeStep {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

fn time_step(params: &Params, allowed: &[TimeStep]) -> ApiResult<Option<TimeStep>> {
    let Some(value) = params.one("timeStep") else {
        return Ok(None);
    };
    let step = match value {
        "hour" => TimeStep::Hour,
        "day" => TimeStep::Day,
        "week" => TimeStep::Week,
        "month" => TimeStep::Month,
        "year" => TimeStep::Year,
        _ => return Err(ApiError::BadRequest(format!("unknown timeStep {value}"))),
    };
    if !allowed.contains(&step) {
        return Err(ApiError::BadRequest(format!(
            "timeStep {value} is not supported here"
        )));
    }
    Ok(Some(step))
}

/// The breakdown asked for: the dimensions kept, in order. Studio's other dimensions (device,
/// cpu, browserEngine, continent, subdivision, timezone, geohash, viewerId) are accepted and
/// absent from answers, as dimensions with no value are.
fn breakdown(params: &Params) -> ApiResult<Vec<Dimension>> {
    let mut out = Vec::new();
    for value in params.all("breakdownBy[]")? {
        let dimension = match value {
            "playbackId" => Dimension::PlaybackId,
            "creatorId" => Dimension::CreatorId,
            "deviceType" => Dimension::DeviceType,
            "browser" => Dimension::Browser,
            "os" => Dimension::Os,
            "country" => Dimension::Country,
            "device" | "cpu" | "browserEngine" | "continent" | "subdivision" | "timezone"
            | "geohash" | "viewerId" => continue,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown breakdownBy value {other}"
                )));
            }
        };
        if !out.contains(&dimension) {
            out.push(dimension);
        }
    }
    Ok(out)
}

/// The playback ID of the project's asset or stream, when one is asked for; `None` when neither.
async fn content_playback_id(
    state: &AppState,
    project_id: &str,
    params: &Params,
) -> ApiResult<Option<String>> {
    let (table, id) = match (params.one("assetId"), params.one("streamId")) {
        (Some(id), None) => ("assets", id),
        (None, Some(id)) => ("streams", id),
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "pass assetId or streamId, not both".into(),
            ));
        }
    };
    let sql = format!(
        "SELECT playback_id FROM {table} WHERE project_id = $1 AND id = $2 AND deleted = 0"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(id)
        .fetch_optional(state.db().reader())
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!("no {} with id {id}", &table[..table.len() - 1]))
        })?;
    Ok(Some(row.try_get("playback_id")?))
}

async fn views(
    state: &AppState,
    principal: &Principal,
    params: &Params,
    playback_id: Option<String>,
) -> ApiResult<Json<Vec<ViewershipMetric>>> {
    let step = time_step(
        params,
        &[
            TimeStep::Hour,
            TimeStep::Day,
            TimeStep::Week,
            TimeStep::Month,
            TimeStep::Year,
        ],
    )?;
    let from = params.time("from")?.unwrap_or(0);
    let to = params.time("to")?.unwrap_or_else(|| now_ms() + 3_600_000);
    if to < from {
        return Err(ApiError::BadRequest("to must not be before from".into()));
    }
    let dimensions = breakdown(params)?;
    let ids = playback_id.map(|id| vec![id]);
    let bucket = step.map(|s| match s {
        TimeStep::Hour => SqlBucket::Hour,
        TimeStep::Week => SqlBucket::Week,
        TimeStep::Day | TimeStep::Month | TimeStep::Year => SqlBucket::Day,
    });
    // Rollups are hourly: a range starting mid-hour includes that hour.
    let from_hour = from - from.rem_euclid(3_600_000);
    let mut rows = repo::read_rollups(
        state.db(),
        &RollupQuery {
            project_id: &principal.project_id,
            playback_ids: ids.as_deref(),
            creator_id: params.one("creatorId"),
            from: from_hour,
            to,
            bucket,
            breakdown: &dimensions,
        },
    )
    .await?;
    if let Some(step @ (TimeStep::Month | TimeStep::Year)) = step {
        rows = fold_by_calendar(rows, step);
    }
    rows.sort_by(|a, b| (a.bucket, &a.dimensions).cmp(&(b.bucket, &b.dimensions)));
    Ok(Json(
        rows.into_iter()
            .map(|row| metric(row, &dimensions))
            .collect(),
    ))
}

/// Day buckets merged into months or years (UTC).
fn fold_by_calendar(rows: Vec<RollupRow>, step: TimeStep) -> Vec<RollupRow> {
    let mut merged: std::collections::BTreeMap<(i64, Vec<String>), RollupRow> = Default::default();
    for row in rows {
        let day = row.bucket.unwrap_or(0).div_euclid(86_400_000);
        let (y, m, _) = civil_from_days(day);
        let start = match step {
            TimeStep::Year => days_from_civil(y, 1, 1),
            _ => days_from_civil(y, m, 1),
        } * 86_400_000;
        let entry = merged
            .entry((start, row.dimensions.clone()))
            .or_insert_with(|| RollupRow {
                dimensions: row.dimensions.clone(),
                bucket: Some(start),
                sums: Default::default(),
            });
        entry.sums.add(&row.sums);
    }
    merged.into_values().collect()
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's civil calendar).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn metric(row: RollupRow, dimensions: &[Dimension]) -> ViewershipMetric {
    let s = &row.sums;
    let mut m = ViewershipMetric {
        timestamp: row.bucket,
        view_count: s.views,
        playtime_mins: s.playtime_ms as f64 / 60_000.0,
        ttff_ms: (s.ttff_count > 0).then(|| s.ttff_ms_sum as f64 / s.ttff_count as f64),
        rebuffer_ratio: (s.beacon_sessions > 0).then(|| {
            let watched = (s.beacon_playtime_ms + s.rebuffer_ms).max(1) as f64;
            s.rebuffer_ms as f64 / watched
        }),
        error_rate: (s.beacon_sessions > 0)
            .then(|| s.error_sessions as f64 / s.beacon_sessions as f64),
        // Not known yet: the beacon says when a player starts, not when a viewer gives up.
        exits_before_start: None,
        ..Default::default()
    };
    for (dimension, value) in dimensions.iter().zip(row.dimensions) {
        if value.is_empty() {
            continue;
        }
        let slot = match dimension {
            Dimension::PlaybackId => &mut m.playback_id,
            Dimension::CreatorId => &mut m.creator_id,
            Dimension::DeviceType => &mut m.device_type,
            Dimension::Browser => &mut m.browser,
            Dimension::Os => &mut m.os,
            Dimension::Country => &mut m.country,
        };
        *slot = Some(value);
    }
    m
}

/// Query viewership metrics of the project.
#[utoipa::path(get, path = "/data/views/query", tag = "metrics", operation_id = "getViewershipMetrics",
    params(
        ("playbackId" = Option<String>, Query, description = "Only this playback ID"),
        ("assetId" = Option<String>, Query, description = "Only this asset's playback ID"),
        ("streamId" = Option<String>, Query, description = "Only this stream's playback ID"),
        ("creatorId" = Option<String>, Query, description = "Only content of this creator"),
        ("from" = Option<String>, Query, description = "Start (RFC 3339 or unix ms)"),
        ("to" = Option<String>, Query, description = "End (RFC 3339 or unix ms)"),
        ("timeStep" = Option<String>, Query, description = "hour, day, week, month or year"),
        ("breakdownBy[]" = Option<Vec<String>>, Query, description = "Dimensions to break down by"),
    ),
    responses((status = 200, body = Vec<ViewershipMetric>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn query_views(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Vec<ViewershipMetric>>> {
    let params = Params::parse(query.as_deref());
    let playback_id = match content_playback_id(&state, &principal.project_id, &params).await? {
        Some(id) => Some(id),
        None => params.one("playbackId").map(str::to_string),
    };
    views(&state, &principal, &params, playback_id).await
}

/// Viewership of one asset or stream (exactly one of `assetId`, `streamId`); CORS keys may call it.
#[utoipa::path(get, path = "/data/views/query/creator", tag = "metrics", operation_id = "getCreatorViewershipMetrics",
    params(
        ("assetId" = Option<String>, Query, description = "The asset"),
        ("streamId" = Option<String>, Query, description = "The stream"),
        ("creatorId" = Option<String>, Query, description = "Only content of this creator"),
        ("from" = Option<String>, Query, description = "Start (RFC 3339 or unix ms)"),
        ("to" = Option<String>, Query, description = "End (RFC 3339 or unix ms)"),
        ("timeStep" = Option<String>, Query, description = "hour, day, week, month or year"),
        ("breakdownBy[]" = Option<Vec<String>>, Query, description = "Dimensions to break down by"),
    ),
    responses((status = 200, body = Vec<ViewershipMetric>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn query_creator_views(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Vec<ViewershipMetric>>> {
    let params = Params::parse(query.as_deref());
    let Some(playback_id) = content_playback_id(&state, &principal.project_id, &params).await?
    else {
        return Err(ApiError::BadRequest(
            "pass exactly one of assetId or streamId".into(),
        ));
    };
    views(&state, &principal, &params, Some(playback_id)).await
}

/// All-time views of a playback ID. Public: players show it.
#[utoipa::path(get, path = "/data/views/query/total/{playbackId}", tag = "metrics", operation_id = "getPublicViewershipMetrics",
    params(("playbackId" = String, Path, description = "The playback ID")),
    security(()),
    responses((status = 200, body = PublicViewership), (status = 400, body = ErrorBody)))]
async fn public_total(
    State(state): State<AppState>,
    Path(playback_id): Path<String>,
) -> ApiResult<Json<PublicViewership>> {
    if playback_id.len() > 128 {
        return Err(ApiError::BadRequest("playbackId is too long".into()));
    }
    let (views, playtime_ms) = repo::total_of(state.db(), &playback_id).await?;
    Ok(Json(PublicViewership {
        playback_id,
        view_count: views,
        playtime_mins: playtime_ms as f64 / 60_000.0,
    }))
}

/// Viewers watching now (served within the last 30 s), with the share of beaconing players
/// that reported an error.
#[utoipa::path(get, path = "/data/views/now", tag = "metrics", operation_id = "getRealtimeViewershipNow",
    params(
        ("playbackId" = Option<String>, Query, description = "Only this playback ID"),
        ("creatorId" = Option<String>, Query, description = "Not kept per viewer: ignored"),
        ("breakdownBy[]" = Option<Vec<String>>, Query, description = "playbackId, device, browser or country"),
    ),
    responses((status = 200, body = Vec<RealtimeViewershipMetric>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn views_now(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Vec<RealtimeViewershipMetric>>> {
    let params = Params::parse(query.as_deref());
    for name in ["from", "to", "timeStep"] {
        if params.one(name).is_some() {
            return Err(ApiError::BadRequest(format!(
                "{name} is not supported by realtime viewership"
            )));
        }
    }
    let mut columns = Vec::new();
    for value in params.all("breakdownBy[]")? {
        let column = match value {
            "playbackId" => "playback_id",
            "device" => "device_type",
            "browser" => "browser",
            "country" => "country",
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown breakdownBy value {other} (playbackId, device, browser or country)"
                )));
            }
        };
        if !columns.contains(&column) {
            columns.push(column);
        }
    }
    let since = now_ms() - NOW_WINDOW_MS;
    let project = &principal.project_id;
    let playback_id = params.one("playbackId");
    let (viewers, players) = tokio::try_join!(
        repo::recent_sessions(
            state.db(),
            "view_sessions",
            project,
            since,
            playback_id,
            &columns
        ),
        repo::recent_sessions(
            state.db(),
            "player_sessions",
            project,
            since,
            playback_id,
            &columns
        ),
    )?;
    // Viewers are counted from what was served; errors from what players report.
    let errors: std::collections::HashMap<Vec<String>, f64> = players
        .into_iter()
        .map(|(values, players, failing)| (values, failing as f64 / players as f64))
        .collect();
    let mut out: Vec<RealtimeViewershipMetric> = viewers
        .into_iter()
        .map(|(values, viewers, _)| {
            let mut m = RealtimeViewershipMetric {
                view_count: viewers,
                error_rate: errors.get(&values).copied().unwrap_or(0.0),
                ..Default::default()
            };
            for (column, value) in columns.iter().zip(values) {
                if value.is_empty() {
                    continue;
                }
                match *column {
                    "playback_id" => m.playback_id = Some(value),
                    "device_type" => m.device = Some(value),
                    "browser" => m.browser = Some(value),
                    _ => m.country = Some(value),
                }
            }
            m
        })
        .collect();
    if out.is_empty() && columns.is_empty() {
        out.push(RealtimeViewershipMetric::default());
    }
    Ok(Json(out))
}

/// Usage of the project: minutes delivered, transcoded and stored.
#[utoipa::path(get, path = "/data/usage/query", tag = "metrics", operation_id = "getUsageMetrics",
    params(
        ("from" = Option<String>, Query, description = "Start (RFC 3339 or unix ms)"),
        ("to" = Option<String>, Query, description = "End (RFC 3339 or unix ms)"),
        ("timeStep" = Option<String>, Query, description = "hour or day"),
        ("creatorId" = Option<String>, Query, description = "Only content of this creator"),
        ("breakdownBy[]" = Option<Vec<String>>, Query, description = "creatorId"),
    ),
    responses((status = 200, body = UsageMetric), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn query_usage(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<serde_json::Value>> {
    let params = Params::parse(query.as_deref());
    time_step(&params, &[TimeStep::Hour, TimeStep::Day])?;
    let from = params.time("from")?.unwrap_or(0);
    let to = params.time("to")?.unwrap_or_else(now_ms);
    if to < from {
        return Err(ApiError::BadRequest("to must not be before from".into()));
    }
    let by_creator = match params.all("breakdownBy[]")?.as_slice() {
        [] => false,
        ["creatorId"] => true,
        _ => {
            return Err(ApiError::BadRequest(
                "usage can only be broken down by creatorId".into(),
            ));
        }
    };
    let creator = params.one("creatorId");
    let delivered = repo::read_rollups(
        state.db(),
        &RollupQuery {
            project_id: &principal.project_id,
            playback_ids: None,
            creator_id: creator,
            from: from - from.rem_euclid(3_600_000),
            to,
            bucket: None,
            breakdown: if by_creator {
                &[Dimension::CreatorId]
            } else {
                &[]
            },
        },
    )
    .await?;
    let (transcoded, stored) =
        super::usage::transcoded_and_stored(state.db(), &principal.project_id, creator, from, to)
            .await?;
    let usage = |creator_id: Option<String>, delivered_ms: i64| UsageMetric {
        user_id: principal.user_id.clone(),
        creator_id,
        delivery_usage_mins: delivered_ms as f64 / 60_000.0,
        total_usage_mins: transcoded,
        storage_usage_mins: stored,
    };
    let json = if by_creator {
        serde_json::to_value(
            delivered
                .into_iter()
                .map(|row| {
                    let creator = row.dimensions.into_iter().next().filter(|c| !c.is_empty());
                    usage(creator, row.sums.playtime_ms)
                })
                .collect::<Vec<_>>(),
        )
    } else {
        let total: i64 = delivered.iter().map(|r| r.sums.playtime_ms).sum();
        serde_json::to_value(usage(creator.map(str::to_string), total))
    };
    Ok(Json(json.map_err(|e| ApiError::Internal(e.into()))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2026, 12, 2), 20_789);
        assert_eq!(civil_from_days(20_789), (2026, 12, 2));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }
}
