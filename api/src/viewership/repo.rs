//! Viewership storage: viewer sessions (raw, expiring) and hourly rollups (what queries read).

use std::collections::HashMap;

use sqlx::Row;

use crate::db::Database;

/// The dimensions a rollup row is kept by (besides its hour). Empty strings are unknowns.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RollupKey {
    pub project_id: String,
    pub playback_id: String,
    pub creator_id: String,
    pub device_type: String,
    pub browser: String,
    pub os: String,
    pub country: String,
}

/// What to add to one rollup row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollupDelta {
    pub views: i64,
    pub playtime_ms: i64,
    pub ttff_ms_sum: i64,
    pub ttff_count: i64,
    pub rebuffer_ms: i64,
    pub beacon_playtime_ms: i64,
    pub beacon_sessions: i64,
    pub error_sessions: i64,
    pub exits_before_start: i64,
}

impl RollupDelta {
    pub fn add(&mut self, other: &RollupDelta) {
        self.views += other.views;
        self.playtime_ms += other.playtime_ms;
        self.ttff_ms_sum += other.ttff_ms_sum;
        self.ttff_count += other.ttff_count;
        self.rebuffer_ms += other.rebuffer_ms;
        self.beacon_playtime_ms += other.beacon_playtime_ms;
        self.beacon_sessions += other.beacon_sessions;
        self.error_sessions += other.error_sessions;
        self.exits_before_start += other.exits_before_start;
    }
}

/// A viewer session's changes since the last flush.
pub struct SessionWrite {
    pub id: String,
    pub key: RollupKey,
    pub started_at: i64,
    pub last_seen_at: i64,
    /// Media time served since the last flush.
    pub playtime_ms: i64,
    /// Not written yet by this node.
    pub new: bool,
}

/// Writes the sessions in one transaction; for each, whether this write created its row (a new
/// view) rather than finding it (written earlier, or by another node).
pub async fn write_sessions(
    db: &Database,
    sessions: &[SessionWrite],
) -> Result<Vec<bool>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let mut created = Vec::with_capacity(sessions.len());
    for s in sessions {
        let inserted = if s.new {
            sqlx::query(
                "INSERT INTO view_sessions (id, project_id, playback_id, started_at, last_seen_at, playtime_ms, \
                 device_type, browser, os, country) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&s.id)
            .bind(&s.key.project_id)
            .bind(&s.key.playback_id)
            .bind(s.started_at)
            .bind(s.last_seen_at)
            .bind(s.playtime_ms)
            .bind(&s.key.device_type)
            .bind(&s.key.browser)
            .bind(&s.key.os)
            .bind(&s.key.country)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1
        } else {
            false
        };
        if !inserted {
            sqlx::query(
                "UPDATE view_sessions SET playtime_ms = playtime_ms + $1, \
                 last_seen_at = CASE WHEN last_seen_at < $2 THEN $2 ELSE last_seen_at END WHERE id = $3",
            )
            .bind(s.playtime_ms)
            .bind(s.last_seen_at)
            .bind(&s.id)
            .execute(&mut *tx)
            .await?;
        }
        created.push(inserted);
    }
    tx.commit().await?;
    Ok(created)
}

/// Adds `deltas` (by key and hour) to the rollups, per playback ID and per project, in one
/// transaction.
pub async fn add_to_rollups(
    db: &Database,
    deltas: &HashMap<(RollupKey, i64), RollupDelta>,
) -> Result<(), sqlx::Error> {
    let mut per_project: HashMap<(RollupKey, i64), RollupDelta> = HashMap::new();
    for ((key, hour), delta) in deltas {
        let key = RollupKey {
            playback_id: String::new(),
            ..key.clone()
        };
        per_project.entry((key, *hour)).or_default().add(delta);
    }
    let mut tx = db.begin().await?;
    for (table, rows) in [
        ("view_rollups", deltas),
        ("view_rollups_project", &per_project),
    ] {
        let by_playback = table == "view_rollups";
        let (pid_column, pid_value, pid_key) = if by_playback {
            ("playback_id, ", "$17, ", "playback_id, ")
        } else {
            ("", "", "")
        };
        let sql = format!(
            "INSERT INTO {table} (project_id, {pid_column}hour, creator_id, device_type, browser, os, country, \
             view_count, playtime_ms, ttff_ms_sum, ttff_count, rebuffer_ms, beacon_playtime_ms, beacon_sessions, \
             error_sessions, exits_before_start) \
             VALUES ($1, {pid_value}$2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (project_id, hour, {pid_key}creator_id, device_type, browser, os, country) DO UPDATE SET \
             view_count = {table}.view_count + excluded.view_count, \
             playtime_ms = {table}.playtime_ms + excluded.playtime_ms, \
             ttff_ms_sum = {table}.ttff_ms_sum + excluded.ttff_ms_sum, \
             ttff_count = {table}.ttff_count + excluded.ttff_count, \
             rebuffer_ms = {table}.rebuffer_ms + excluded.rebuffer_ms, \
             beacon_playtime_ms = {table}.beacon_playtime_ms + excluded.beacon_playtime_ms, \
             beacon_sessions = {table}.beacon_sessions + excluded.beacon_sessions, \
             error_sessions = {table}.error_sessions + excluded.error_sessions, \
             exits_before_start = {table}.exits_before_start + excluded.exits_before_start"
        );
        for ((k, hour), d) in rows {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(&k.project_id)
                .bind(hour)
                .bind(&k.creator_id)
                .bind(&k.device_type)
                .bind(&k.browser)
                .bind(&k.os)
                .bind(&k.country)
                .bind(d.views)
                .bind(d.playtime_ms)
                .bind(d.ttff_ms_sum)
                .bind(d.ttff_count)
                .bind(d.rebuffer_ms)
                .bind(d.beacon_playtime_ms)
                .bind(d.beacon_sessions)
                .bind(d.error_sessions)
                .bind(d.exits_before_start);
            if by_playback {
                query = query.bind(&k.playback_id);
            }
            query.execute(&mut *tx).await?;
        }
    }
    tx.commit().await
}

pub async fn delete_sessions_before(db: &Database, before: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM view_sessions WHERE started_at < $1")
        .bind(before)
        .execute(db.writer())
        .await?;
    sqlx::query("DELETE FROM player_sessions WHERE last_seen_at < $1")
        .bind(before)
        .execute(db.writer())
        .await?;
    Ok(())
}

/// A beaconing player's state, as of its last beacon.
#[derive(Debug, Clone)]
pub struct PlayerWrite {
    pub id: String,
    pub key: RollupKey,
    pub last_seen_at: i64,
    pub errored: bool,
}

/// Records beaconing players, in one transaction.
pub async fn write_players(db: &Database, players: &[PlayerWrite]) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    for p in players {
        sqlx::query(
            "INSERT INTO player_sessions (id, project_id, playback_id, last_seen_at, errored, device_type, browser, country) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET \
             last_seen_at = CASE WHEN player_sessions.last_seen_at < excluded.last_seen_at \
             THEN excluded.last_seen_at ELSE player_sessions.last_seen_at END, \
             errored = CASE WHEN player_sessions.errored > excluded.errored \
             THEN player_sessions.errored ELSE excluded.errored END",
        )
        .bind(&p.id)
        .bind(&p.key.project_id)
        .bind(&p.key.playback_id)
        .bind(p.last_seen_at)
        .bind(p.errored as i64)
        .bind(&p.key.device_type)
        .bind(&p.key.browser)
        .bind(&p.key.country)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// A dimension of the rollups answers can be broken down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    PlaybackId,
    CreatorId,
    DeviceType,
    Browser,
    Os,
    Country,
}

impl Dimension {
    pub fn column(self) -> &'static str {
        match self {
            Dimension::PlaybackId => "playback_id",
            Dimension::CreatorId => "creator_id",
            Dimension::DeviceType => "device_type",
            Dimension::Browser => "browser",
            Dimension::Os => "os",
            Dimension::Country => "country",
        }
    }
}

/// How rows are bucketed in time, as far as SQL does it (months and years are folded from days).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlBucket {
    Hour,
    Day,
    /// Weeks starting on Monday (UTC).
    Week,
}

impl SqlBucket {
    fn expression(self) -> &'static str {
        match self {
            SqlBucket::Hour => "hour",
            SqlBucket::Day => "(hour - (hour % 86400000))",
            // 1970-01-05 (345600000 ms) was a Monday.
            SqlBucket::Week => "(hour - ((hour - 345600000) % 604800000))",
        }
    }
}

/// What to read from the rollups of one project.
pub struct RollupQuery<'a> {
    pub project_id: &'a str,
    pub playback_ids: Option<&'a [String]>,
    pub creator_id: Option<&'a str>,
    pub from: i64,
    pub to: i64,
    pub bucket: Option<SqlBucket>,
    pub breakdown: &'a [Dimension],
}

/// One group of rollup rows.
#[derive(Debug, Clone, Default)]
pub struct RollupRow {
    /// Values of the query's breakdown, in its order.
    pub dimensions: Vec<String>,
    pub bucket: Option<i64>,
    pub sums: RollupDelta,
}

pub async fn read_rollups(
    db: &Database,
    q: &RollupQuery<'_>,
) -> Result<Vec<RollupRow>, sqlx::Error> {
    let mut group: Vec<String> = q.breakdown.iter().map(|d| d.column().to_string()).collect();
    let mut select = group.clone();
    if let Some(bucket) = q.bucket {
        select.push(format!("{} AS bucket", bucket.expression()));
        group.push(bucket.expression().to_string());
    }
    select.extend(
        [
            "view_count",
            "playtime_ms",
            "ttff_ms_sum",
            "ttff_count",
            "rebuffer_ms",
            "beacon_playtime_ms",
            "beacon_sessions",
            "error_sessions",
            "exits_before_start",
        ]
        .iter()
        .map(|c| format!("CAST(SUM({c}) AS BIGINT) AS {c}")),
    );
    // Without a playback ID to filter or break down by, the per-project sums answer.
    let table = if q.playback_ids.is_none() && !q.breakdown.contains(&Dimension::PlaybackId) {
        "view_rollups_project"
    } else {
        "view_rollups"
    };
    let mut sql = format!(
        "SELECT {} FROM {table} WHERE project_id = $1 AND hour >= $2 AND hour < $3",
        select.join(", ")
    );
    let mut next = 4;
    if let Some(ids) = q.playback_ids {
        let marks: Vec<String> = (0..ids.len()).map(|i| format!("${}", next + i)).collect();
        next += ids.len();
        sql.push_str(&format!(" AND playback_id IN ({})", marks.join(", ")));
        if ids.is_empty() {
            return Ok(Vec::new());
        }
    }
    if q.creator_id.is_some() {
        sql.push_str(&format!(" AND creator_id = ${next}"));
    }
    if group.is_empty() {
        // One total, or none when nothing matched.
        sql.push_str(" HAVING COUNT(*) > 0");
    } else {
        sql.push_str(&format!(" GROUP BY {}", group.join(", ")));
    }
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(q.project_id)
        .bind(q.from)
        .bind(q.to);
    for id in q.playback_ids.unwrap_or_default() {
        query = query.bind(id);
    }
    if let Some(creator) = q.creator_id {
        query = query.bind(creator);
    }
    let rows = query.fetch_all(db.reader()).await?;
    rows.iter()
        .map(|row| {
            let sum = |c: &str| row.try_get::<Option<i64>, _>(c).map(|v| v.unwrap_or(0));
            Ok(RollupRow {
                dimensions: q
                    .breakdown
                    .iter()
                    .map(|d| row.try_get::<String, _>(d.column()))
                    .collect::<Result<_, _>>()?,
                bucket: match q.bucket {
                    Some(_) => Some(row.try_get::<i64, _>("bucket")?),
                    None => None,
                },
                sums: RollupDelta {
                    views: sum("view_count")?,
                    playtime_ms: sum("playtime_ms")?,
                    ttff_ms_sum: sum("ttff_ms_sum")?,
                    ttff_count: sum("ttff_count")?,
                    rebuffer_ms: sum("rebuffer_ms")?,
                    beacon_playtime_ms: sum("beacon_playtime_ms")?,
                    beacon_sessions: sum("beacon_sessions")?,
                    error_sessions: sum("error_sessions")?,
                    exits_before_start: sum("exits_before_start")?,
                },
            })
        })
        .collect()
}

/// All-time views and playtime (ms) of a playback ID, whatever its project.
pub async fn total_of(db: &Database, playback_id: &str) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(view_count), 0) AS BIGINT) AS views, \
         CAST(COALESCE(SUM(playtime_ms), 0) AS BIGINT) AS playtime FROM view_rollups WHERE playback_id = $1",
    )
    .bind(playback_id)
    .fetch_one(db.reader())
    .await?;
    Ok((row.try_get("views")?, row.try_get("playtime")?))
}

/// Sessions in `table` (`view_sessions` or `player_sessions`) of the project seen since `since`,
/// grouped by `columns` (which both tables have): (values, sessions, sessions with errors; always
/// 0 for viewer sessions).
pub async fn recent_sessions(
    db: &Database,
    table: &'static str,
    project_id: &str,
    since: i64,
    playback_id: Option<&str>,
    columns: &[&'static str],
) -> Result<Vec<(Vec<String>, i64, i64)>, sqlx::Error> {
    let failing = if table == "player_sessions" {
        "errored"
    } else {
        "0"
    };
    let mut select: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    select.push("COUNT(*) AS sessions".into());
    select.push(format!("CAST(SUM({failing}) AS BIGINT) AS failing"));
    let mut sql = format!(
        "SELECT {} FROM {table} WHERE project_id = $1 AND last_seen_at >= $2",
        select.join(", ")
    );
    if playback_id.is_some() {
        sql.push_str(" AND playback_id = $3");
    }
    if !columns.is_empty() {
        sql.push_str(&format!(" GROUP BY {}", columns.join(", ")));
    }
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(since);
    if let Some(id) = playback_id {
        query = query.bind(id);
    }
    let rows = query.fetch_all(db.reader()).await?;
    rows.iter()
        .map(|row| {
            Ok((
                columns
                    .iter()
                    .map(|c| row.try_get::<String, _>(*c))
                    .collect::<Result<_, _>>()?,
                row.try_get::<i64, _>("sessions")?,
                row.try_get::<Option<i64>, _>("failing")?.unwrap_or(0),
            ))
        })
        .filter(|r| !matches!(r, Ok((_, 0, _))))
        .collect()
}
