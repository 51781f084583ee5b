//! Point reads that every login makes, run on the calling thread.
//!
//! sqlx runs each SQLite call on its connection's worker thread and hands
//! the answer back through channels. With both cores in use, the two
//! wake-ups per call cost several times the read itself: in a SCRAM login
//! storm (perf), the sqlx threads' futex sleeps and wake-ups were about 30%
//! of a login's CPU and SQLite's own work 5%. A read of a few indexed rows
//! from SQLite's page cache takes microseconds, less than that hand-off, so
//! these reads run synchronously on read-only connections of their own.
//! Writes stay on sqlx; WAL mode lets these readers run beside the writer
//! and see every committed transaction.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::{Result, StoreError};

/// How long a read waits on a lock before it fails. Readers in WAL mode
/// wait only in rare cases (a checkpoint that truncates the log, recovery
/// after a crash); the wait blocks a runtime thread, so it is short.
const READ_BUSY_TIMEOUT: Duration = Duration::from_millis(500);

/// Prepared statements kept per connection: the login reads and a margin.
const STATEMENT_CACHE: usize = 16;

/// Read-only connections, taken for one read and put back.
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// Connections kept between reads: one per thread that reads at once
    /// (none once the store is closed).
    keep: AtomicUsize,
}

impl Readers {
    pub(crate) fn new(path: &Path, keep: usize) -> Self {
        Readers {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            keep: AtomicUsize::new(keep),
        }
    }

    /// Runs `f` on an idle connection (a new one if none is idle).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match idle {
            Some(c) => c,
            None => self.open()?,
        };
        let r = f(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.keep.load(Ordering::Relaxed) {
            idle.push(conn);
        }
        r.map_err(StoreError::from)
    }

    /// Closes the idle connections (a read in progress keeps its own
    /// until it ends). Nothing keeps them after this: the store is closing.
    pub(crate) fn close(&self) {
        self.keep.store(0, Ordering::Relaxed);
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        // Not SQLITE_OPEN_READ_ONLY: a read-only connection cannot create
        // the WAL index if it is the first to open the file after a crash.
        // query_only refuses writes all the same.
        let c = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(READ_BUSY_TIMEOUT)?;
        c.pragma_update(None, "query_only", true)?;
        c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(c)
    }
}
