//! [`AsyncStore`]: the store for tokio servers, which must never run SQLite on executor threads.
//!
//! One dedicated writer thread owns the [`Store`] (and with it the instance lock); async callers send
//! it closures and await the answer on a oneshot channel, so a writer waiting out a busy database
//! parks only that thread. Reads run on tokio's blocking pool with read-only connections taken from a
//! small pool; in WAL mode they never wait for the writer. A closure that panics panics again in
//! the task that sent it, and leaves the writer running.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rusqlite::{Connection, Transaction};
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::store::{Access, OpenConfig, Store, connect};
use crate::tool::Tool;

type Job = Box<dyn FnOnce(&Store) + Send>;
type Outcome<T> = std::result::Result<T, Box<dyn Any + Send>>;

/// Read connections kept open between reads.
const IDLE_READERS: usize = 8;

/// A store shared by async tasks: a writer thread plus pooled read connections.
#[derive(Debug)]
pub struct AsyncStore {
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    readers: Arc<Readers>,
    /// Bumped after every job on the writer thread: see [`AsyncStore::generation`].
    generation: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Readers {
    path: PathBuf,
    busy_deadline: Duration,
    idle: Mutex<Vec<Connection>>,
}

impl AsyncStore {
    /// Opens the store (blocking: call it before serving, or inside `spawn_blocking`) and starts
    /// its writer thread.
    pub fn open(tool: &Tool, config: &OpenConfig) -> Result<AsyncStore> {
        let store = Store::open(tool, config)?;
        let readers = Arc::new(Readers {
            path: store.path().to_path_buf(),
            busy_deadline: store.busy_deadline(),
            idle: Mutex::new(Vec::new()),
        });
        let (jobs, inbox) = mpsc::channel::<Job>();
        let writer = thread::Builder::new()
            .name(format!("{}-store-writer", tool.name))
            .spawn(move || {
                for job in inbox {
                    job(&store);
                }
            })
            .map_err(|e| Error::io("start the writer thread for", readers.path.clone(), e))?;
        Ok(AsyncStore {
            jobs: Some(jobs),
            writer: Some(writer),
            readers,
            generation: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A number that changes whenever this store may have written: it is bumped after each
    /// write or maintenance job, before its caller gets the answer. A cache of what was read
    /// stays valid while the number it was read under holds (for this process's writes; other
    /// processes' are not seen).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.readers.path
    }

    /// Runs `f` on the writer thread with the [`Store`]: for maintenance (backup, prune, vacuum).
    pub async fn with_store<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> T + Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Outcome<T>>();
        let generation = Arc::clone(&self.generation);
        let job: Job = Box::new(move |store| {
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| f(store)));
            generation.fetch_add(1, Ordering::AcqRel);
            let _ = reply.send(outcome);
        });
        let closed = || Error::Closed {
            path: self.readers.path.clone(),
        };
        self.jobs
            .as_ref()
            .ok_or_else(closed)?
            .send(job)
            .map_err(|_| closed())?;
        match answer.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(payload)) => panic::resume_unwind(payload),
            Err(_) => Err(closed()),
        }
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction on the writer thread. See [`Store::write`].
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<Error> + Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
    {
        self.with_store(move |store| store.write(f)).await?
    }

    /// Runs `f` with a read-only connection on tokio's blocking pool.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<Error> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        let joined = tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let result = f(&conn);
            readers.give_back(conn);
            result
        })
        .await;
        match joined {
            Ok(result) => result,
            Err(e) if e.is_panic() => panic::resume_unwind(e.into_panic()),
            Err(_) => Err(E::from(Error::Closed {
                path: self.readers.path.clone(),
            })),
        }
    }

    /// Stops the writer after the work already sent, closes the database and releases the lock.
    pub fn close(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        drop(self.jobs.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        if let Ok(mut idle) = self.readers.idle.lock() {
            idle.clear();
        }
    }
}

impl Drop for AsyncStore {
    fn drop(&mut self) {
        self.shut_down();
    }
}

impl Readers {
    fn take(&self) -> Result<Connection> {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match pooled {
            Some(conn) => Ok(conn),
            None => connect(&self.path, Access::ReadOnly, self.busy_deadline),
        }
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < IDLE_READERS
            && conn.is_autocommit()
        {
            idle.push(conn);
        }
    }
}
