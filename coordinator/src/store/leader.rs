//! Who leads among coordinator replicas sharing a PostgreSQL database: a
//! session-level advisory lock ([`LOCK_LEADER`]) held on a connection of
//! its own for as long as the replica leads. SQLite has one coordinator, so
//! no lock is taken there. The other advisory lock keys (migration,
//! catalog version, latency thresholds) are transaction-scoped and live in
//! `mod.rs`.
use sqlx::ConnectOptions;

use super::{Backend, Result, Store};

/// The leader lock ([`Store::try_leader_lock`]).
pub const LOCK_LEADER: i64 = 0x6175_7468_0003;

/// The leader lock held on a connection of its own (PostgreSQL); dropping
/// or releasing it frees the lock for another replica.
pub struct LeaderLock {
    conn: sqlx::AnyConnection,
}

impl LeaderLock {
    /// Whether the connection (and so the lock) is still there.
    pub async fn check(&mut self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&mut self.conn).await?;
        Ok(())
    }

    pub async fn release(mut self) {
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(LOCK_LEADER)
            .fetch_optional(&mut self.conn)
            .await;
        let _ = sqlx::Connection::close(self.conn).await;
    }
}

impl Store {
    /// Tries to take the leader lock (PostgreSQL only; `None` when another
    /// replica holds it, or on SQLite where no lock is needed).
    pub async fn try_leader_lock(&self) -> Result<Option<LeaderLock>> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut conn = self.options.connect().await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LOCK_LEADER)
            .fetch_one(&mut conn)
            .await?;
        if got {
            Ok(Some(LeaderLock { conn }))
        } else {
            let _ = sqlx::Connection::close(conn).await;
            Ok(None)
        }
    }
}
