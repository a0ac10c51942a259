//! The [`Store`] on [`SqlStore`]: every query, once for both backends (`on_pool!`).

use async_trait::async_trait;
use sqlx::Row;

use super::{DEPLOYMENT_COLUMNS, Pool, SqlStore};
use crate::Error;
use crate::store::{
    AppRecord, AuditRow, DeploymentRecord, Enqueued, NewDeployment, Role, Status, Store,
    StoredEvent, TokenRecord,
};

fn db(source: sqlx::Error) -> Error {
    Error::Database { source }
}

fn json_text(v: &serde_json::Value) -> String {
    v.to_string()
}

fn parse_json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or(serde_json::Value::Null)
}

/// Builds a record from a row of either backend.
macro_rules! deployment_of {
    ($row:expr) => {{
        let r = $row;
        let status: String = r.try_get("status").map_err(db)?;
        let request: String = r.try_get("request").map_err(db)?;
        let stages: String = r.try_get("stages").map_err(db)?;
        let params: String = r.try_get("params").map_err(db)?;
        let result: Option<String> = r.try_get("result").map_err(db)?;
        DeploymentRecord {
            seq: r.try_get("seq").map_err(db)?,
            id: r.try_get("id").map_err(db)?,
            project: r.try_get("project").map_err(db)?,
            app: r.try_get("app").map_err(db)?,
            kind: r.try_get("kind").map_err(db)?,
            params: parse_json(&params),
            status: Status::parse(&status).ok_or_else(|| Error::Corrupt {
                what: format!("deployment status `{status}`"),
            })?,
            request: parse_json(&request),
            requested_by: r.try_get("requested_by").map_err(db)?,
            stages: parse_json(&stages),
            result: result.as_deref().map(parse_json),
            error: r.try_get("error").map_err(db)?,
            claimed_by: r.try_get("claimed_by").map_err(db)?,
            created_ms: r.try_get("created_ms").map_err(db)?,
            started_ms: r.try_get("started_ms").map_err(db)?,
            finished_ms: r.try_get("finished_ms").map_err(db)?,
        }
    }};
}

macro_rules! audit_of {
    ($row:expr) => {{
        let r = $row;
        AuditRow {
            at_ms: r.try_get("at_ms").map_err(db)?,
            request_id: r.try_get("request_id").map_err(db)?,
            token_id: r.try_get("token_id").map_err(db)?,
            action: r.try_get("action").map_err(db)?,
            project: r.try_get("project").map_err(db)?,
            app: r.try_get("app").map_err(db)?,
            deployment_id: r.try_get("deployment_id").map_err(db)?,
            status: r.try_get("status").map_err(db)?,
            result: r.try_get("result").map_err(db)?,
        }
    }};
}

macro_rules! token_of {
    ($row:expr) => {{
        let r = $row;
        let role: String = r.try_get("role").map_err(db)?;
        TokenRecord {
            id: r.try_get("id").map_err(db)?,
            project: r.try_get("project").map_err(db)?,
            role: Role::parse(&role).ok_or_else(|| Error::Corrupt {
                what: format!("token role `{role}`"),
            })?,
            created_ms: r.try_get("created_ms").map_err(db)?,
            expires_ms: r.try_get("expires_ms").map_err(db)?,
            revoked_ms: r.try_get("revoked_ms").map_err(db)?,
        }
    }};
}

#[async_trait]
impl Store for SqlStore {
    async fn add_token(&self, t: &TokenRecord, hash: &str) -> Result<(), Error> {
        on_pool!(self, p => sqlx::query(
            "INSERT INTO tokens (id, hash, project, role, created_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&t.id)
        .bind(hash)
        .bind(&t.project)
        .bind(t.role.as_str())
        .bind(t.created_ms)
        .bind(t.expires_ms)
        .execute(p)
        .await
        .map(drop)
        .map_err(db))
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, Error> {
        on_pool!(self, p => {
            let row = sqlx::query("SELECT * FROM tokens WHERE hash = $1")
                .bind(hash)
                .fetch_optional(p)
                .await
                .map_err(db)?;
            match row {
                Some(r) => Ok(Some(token_of!(&r))),
                None => Ok(None),
            }
        })
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, Error> {
        on_pool!(self, p => {
            let rows = sqlx::query("SELECT * FROM tokens ORDER BY created_ms DESC, id")
                .fetch_all(p)
                .await
                .map_err(db)?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(token_of!(r));
            }
            Ok(out)
        })
    }

    async fn revoke_token(&self, id: &str, now_ms: i64) -> Result<bool, Error> {
        on_pool!(self, p => sqlx::query(
            "UPDATE tokens SET revoked_ms = COALESCE(revoked_ms, $2) WHERE id = $1",
        )
        .bind(id)
        .bind(now_ms)
        .execute(p)
        .await
        .map(|r| r.rows_affected() > 0)
        .map_err(db))
    }

    async fn enqueue(&self, d: &NewDeployment, cap: u32) -> Result<Enqueued, Error> {
        on_pool!(self, p => {
            let mut tx = p.begin().await.map_err(db)?;
            if self.is_shared() {
                // Two servers counting the same project's queue take turns.
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(&d.project)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            sqlx::query("INSERT INTO projects (name, created_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(&d.project)
                .bind(d.created_ms)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            sqlx::query("INSERT INTO apps (project, name, created_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(&d.project)
                .bind(&d.app)
                .bind(d.created_ms)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            let inserted = sqlx::query(
                "INSERT INTO deployments (id, project, app, status, request, requested_by, created_ms, \
                 kind, params) \
                 SELECT $1, $2, $3, 'queued', $4, $5, $6, $8, $9 \
                 WHERE (SELECT COUNT(*) FROM deployments \
                        WHERE project = $2 AND status IN ('queued', 'running')) < $7",
            )
            .bind(&d.id)
            .bind(&d.project)
            .bind(&d.app)
            .bind(json_text(&d.request))
            .bind(&d.requested_by)
            .bind(d.created_ms)
            .bind(i64::from(cap))
            .bind(&d.kind)
            .bind(json_text(&d.params))
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
            tx.commit().await.map_err(db)?;
            Ok(if inserted == 1 { Enqueued::Accepted } else { Enqueued::Full })
        })
    }

    async fn deployment(&self, id: &str) -> Result<Option<DeploymentRecord>, Error> {
        let sql = format!("SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = $1");
        on_pool!(self, p => {
            let row = sqlx::query(&sql).bind(id).fetch_optional(p).await.map_err(db)?;
            match row {
                Some(r) => Ok(Some(deployment_of!(&r))),
                None => Ok(None),
            }
        })
    }

    async fn claim(&self, server: &str, now_ms: i64) -> Result<Option<DeploymentRecord>, Error> {
        // The clock is read before the database orders this claim after the previous job's
        // end: the start is never recorded before that end.
        const LAST_END: &str = "SELECT MAX(f.finished_ms) FROM deployments f \
             WHERE f.project = deployments.project AND f.app = deployments.app";
        // The oldest queued deployment that is first in its app's queue and whose app has
        // none running. The unique index on running deployments per app refuses a second
        // claim of the same app that raced this one; PostgreSQL also skips rows another
        // server is claiming.
        let lock = if self.is_shared() {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE deployments SET status = 'running', claimed_by = $1, started_ms = \
               CASE WHEN $2 > COALESCE(({LAST_END}), 0) THEN $2 ELSE ({LAST_END}) END, \
             heartbeat_ms = $2 \
             WHERE status = 'queued' AND seq = (\
               SELECT d.seq FROM deployments d WHERE d.status = 'queued' \
               AND NOT EXISTS (SELECT 1 FROM deployments r WHERE r.project = d.project \
                               AND r.app = d.app AND r.status = 'running') \
               AND d.seq = (SELECT MIN(q.seq) FROM deployments q WHERE q.project = d.project \
                            AND q.app = d.app AND q.status = 'queued') \
               ORDER BY d.seq LIMIT 1{lock}) \
             RETURNING {DEPLOYMENT_COLUMNS}"
        );
        on_pool!(self, p => {
            let row = sqlx::query(&sql)
                .bind(server)
                .bind(now_ms)
                .fetch_optional(p)
                .await;
            match row {
                Ok(Some(r)) => Ok(Some(deployment_of!(&r))),
                Ok(None) => Ok(None),
                // Another claim of the same app won: nothing for this caller now.
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(None),
                Err(e) => Err(db(e)),
            }
        })
    }

    async fn heartbeat(&self, server: &str, now_ms: i64) -> Result<(), Error> {
        on_pool!(self, p => sqlx::query(
            "UPDATE deployments SET heartbeat_ms = $2 WHERE claimed_by = $1 AND status = 'running'",
        )
        .bind(server)
        .bind(now_ms)
        .execute(p)
        .await
        .map(drop)
        .map_err(db))
    }

    async fn interrupt_stale(
        &self,
        stale_before_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<String>, Error> {
        on_pool!(self, p => {
            let rows = sqlx::query(
                "UPDATE deployments SET status = 'interrupted', finished_ms = $2, \
                 error = 'the server running it stopped before it finished; deploy again to converge' \
                 WHERE status = 'running' AND COALESCE(heartbeat_ms, 0) < $1 RETURNING id",
            )
            .bind(stale_before_ms)
            .bind(now_ms)
            .fetch_all(p)
            .await
            .map_err(db)?;
            rows.iter().map(|r| r.try_get::<String, _>("id").map_err(db)).collect()
        })
    }

    async fn cancel_queued(&self, id: &str, now_ms: i64) -> Result<bool, Error> {
        on_pool!(self, p => sqlx::query(
            "UPDATE deployments SET status = 'cancelled', finished_ms = $2, \
             error = 'cancelled before it started' WHERE id = $1 AND status = 'queued'",
        )
        .bind(id)
        .bind(now_ms)
        .execute(p)
        .await
        .map(|r| r.rows_affected() == 1)
        .map_err(db))
    }

    async fn set_stages(&self, id: &str, stages: &serde_json::Value) -> Result<(), Error> {
        on_pool!(self, p => sqlx::query("UPDATE deployments SET stages = $2 WHERE id = $1")
            .bind(id)
            .bind(json_text(stages))
            .execute(p)
            .await
            .map(drop)
            .map_err(db))
    }

    async fn finish(
        &self,
        id: &str,
        status: Status,
        result: Option<&serde_json::Value>,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<(), Error> {
        on_pool!(self, p => sqlx::query(
            "UPDATE deployments SET status = $2, result = $3, error = $4, finished_ms = $5 \
             WHERE id = $1 AND status = 'running'",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(result.map(json_text))
        .bind(error)
        .bind(now_ms)
        .execute(p)
        .await
        .map(drop)
        .map_err(db))
    }

    async fn active_count(&self, project: &str) -> Result<i64, Error> {
        on_pool!(self, p => sqlx::query(
            "SELECT COUNT(*) AS n FROM deployments WHERE project = $1 \
             AND status IN ('queued', 'running')",
        )
        .bind(project)
        .fetch_one(p)
        .await
        .and_then(|r| r.try_get::<i64, _>("n"))
        .map_err(db))
    }

    async fn add_event(
        &self,
        deployment: &str,
        seq: i64,
        body: &serde_json::Value,
    ) -> Result<(), Error> {
        on_pool!(self, p => sqlx::query(
            "INSERT INTO events (deployment_id, seq, body) VALUES ($1, $2, $3)",
        )
        .bind(deployment)
        .bind(seq)
        .bind(json_text(body))
        .execute(p)
        .await
        .map(drop)
        .map_err(db))
    }

    async fn events(&self, deployment: &str, after: i64) -> Result<Vec<StoredEvent>, Error> {
        on_pool!(self, p => {
            let rows = sqlx::query(
                "SELECT seq, body FROM events WHERE deployment_id = $1 AND seq > $2 ORDER BY seq",
            )
            .bind(deployment)
            .bind(after)
            .fetch_all(p)
            .await
            .map_err(db)?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let body: String = r.try_get("body").map_err(db)?;
                out.push(StoredEvent { seq: r.try_get("seq").map_err(db)?, body: parse_json(&body) });
            }
            Ok(out)
        })
    }

    async fn audit(&self, a: &AuditRow) -> Result<(), Error> {
        on_pool!(self, p => sqlx::query(
            "INSERT INTO audit (at_ms, request_id, token_id, action, project, app, \
             deployment_id, status, result) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(a.at_ms)
        .bind(&a.request_id)
        .bind(&a.token_id)
        .bind(&a.action)
        .bind(&a.project)
        .bind(&a.app)
        .bind(&a.deployment_id)
        .bind(a.status)
        .bind(&a.result)
        .execute(p)
        .await
        .map(drop)
        .map_err(db))
    }

    async fn audit_rows(&self) -> Result<Vec<AuditRow>, Error> {
        on_pool!(self, p => {
            let rows = sqlx::query("SELECT * FROM audit ORDER BY id")
                .fetch_all(p)
                .await
                .map_err(db)?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(audit_of!(r));
            }
            Ok(out)
        })
    }

    async fn audit_of(
        &self,
        project: &str,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<AuditRow>, Error> {
        on_pool!(self, p => {
            let rows = sqlx::query(
                "SELECT * FROM audit WHERE project = $1 AND at_ms >= $2 ORDER BY id LIMIT $3",
            )
            .bind(project)
            .bind(since_ms)
            .bind(limit)
            .fetch_all(p)
            .await
            .map_err(db)?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(audit_of!(r));
            }
            Ok(out)
        })
    }

    async fn app(&self, project: &str, app: &str) -> Result<Option<AppRecord>, Error> {
        on_pool!(self, p => {
            let row = sqlx::query(
                "SELECT project, name, created_ms, current, current_deployment, current_ms \
                 FROM apps WHERE project = $1 AND name = $2",
            )
            .bind(project)
            .bind(app)
            .fetch_optional(p)
            .await
            .map_err(db)?;
            let Some(r) = row else { return Ok(None) };
            let current: Option<String> = r.try_get("current").map_err(db)?;
            Ok(Some(AppRecord {
                project: r.try_get("project").map_err(db)?,
                name: r.try_get("name").map_err(db)?,
                created_ms: r.try_get("created_ms").map_err(db)?,
                current: current.as_deref().map(parse_json),
                current_deployment: r.try_get("current_deployment").map_err(db)?,
                current_ms: r.try_get("current_ms").map_err(db)?,
            }))
        })
    }

    async fn set_current(
        &self,
        project: &str,
        app: &str,
        current: &serde_json::Value,
        deployment: &str,
        now_ms: i64,
    ) -> Result<(), Error> {
        on_pool!(self, p => sqlx::query(
            "UPDATE apps SET current = $3, current_deployment = $4, current_ms = $5 \
             WHERE project = $1 AND name = $2",
        )
        .bind(project)
        .bind(app)
        .bind(json_text(current))
        .bind(deployment)
        .bind(now_ms)
        .execute(p)
        .await
        .map(drop)
        .map_err(db))
    }

    async fn deployments_of(
        &self,
        project: &str,
        app: &str,
        limit: i64,
    ) -> Result<Vec<DeploymentRecord>, Error> {
        let sql = format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE project = $1 AND app = $2 \
             ORDER BY seq DESC LIMIT $3"
        );
        on_pool!(self, p => {
            let rows = sqlx::query(&sql)
                .bind(project)
                .bind(app)
                .bind(limit)
                .fetch_all(p)
                .await
                .map_err(db)?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(deployment_of!(r));
            }
            Ok(out)
        })
    }

    async fn queue_counts(&self) -> Result<(i64, i64), Error> {
        on_pool!(self, p => {
            let r = sqlx::query(
                "SELECT COALESCE(SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END), 0) AS q, \
                 COALESCE(SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END), 0) AS r \
                 FROM deployments WHERE status IN ('queued', 'running')",
            )
            .fetch_one(p)
            .await
            .map_err(db)?;
            Ok((r.try_get::<i64, _>("q").map_err(db)?, r.try_get::<i64, _>("r").map_err(db)?))
        })
    }
}
