//! The one thread that owns the SQLite connection.
//!
//! Requests are closures sent over a channel; each reply comes back over a oneshot. The
//! async caller awaits the reply, so no SQLite call ever runs on a tokio worker thread.

use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::StateError;

enum Job {
    Run(Box<dyn FnOnce(&mut Connection) + Send>),
    /// Close the connection (checkpointing the WAL) and end the thread; the sender hears
    /// back once the connection is closed.
    Close(oneshot::Sender<()>),
}

/// A handle to the connection thread. Cloning shares the thread; the thread ends when the
/// last handle is dropped.
#[derive(Clone, Debug)]
pub(crate) struct ConnThread {
    tx: mpsc::Sender<Job>,
}

impl ConnThread {
    pub(crate) fn spawn(mut conn: Connection) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        // The connection thread is not a tokio thread: it blocks on the channel and on
        // SQLite (including fsync), which is exactly what must stay off the runtime.
        std::thread::Builder::new()
            .name("fogbook-sqlite".to_owned())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    match job {
                        Job::Run(f) => f(&mut conn),
                        Job::Close(done) => {
                            drop(conn);
                            let _ = done.send(());
                            return;
                        }
                    }
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!("cannot start the SQLite thread: {e}"));
        Self { tx }
    }

    /// Closes the connection cleanly (the WAL is checkpointed and removed) and ends the
    /// thread. Later calls on any clone fail with [`StateError::StoreClosed`].
    pub(crate) async fn close(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Job::Close(done)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Runs `f` on the connection thread and returns its result.
    pub(crate) async fn call<T, F>(&self, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StateError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = Job::Run(Box::new(move |conn| {
            let _ = reply.send(f(conn));
        }));
        self.tx.send(job).map_err(|_| StateError::StoreClosed)?;
        rx.await.map_err(|_| StateError::StoreClosed)?
    }
}
