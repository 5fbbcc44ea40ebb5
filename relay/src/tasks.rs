//! Tasks that outlive the connection or request that started them (the
//! resume-grace timers): owned by the relay, so that
//! [`Relay::shutdown`](crate::server::Relay::shutdown) waits for them and
//! nothing the relay started writes to its store after shutdown returned.
//!
//! A task waits with [`Tasks::stopping`] in every long wait and gives up
//! when the relay stops; work it already started (a store transaction) runs
//! to its end. Tasks asked for once the relay is stopping are not started.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument as _;

/// How long shutdown waits for owned tasks before aborting them.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// The relay's own background tasks.
#[derive(Debug)]
pub struct Tasks {
    set: Mutex<JoinSet<()>>,
    shutdown: watch::Receiver<bool>,
}

impl Tasks {
    /// Tasks that stop when `shutdown` turns true.
    pub fn new(shutdown: watch::Receiver<bool>) -> Self {
        Self {
            set: Mutex::new(JoinSet::new()),
            shutdown,
        }
    }

    /// Starts `task` in the current tracing span, owned by the relay;
    /// returns false (and starts nothing) when the relay is stopping.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> bool {
        let mut set = self.set.lock().unwrap_or_else(PoisonError::into_inner);
        // Reap the finished ones so the set does not grow.
        while set.try_join_next().is_some() {}
        // Checked under the lock: `join` takes the set under it after the
        // flag turned, so a task is either joined or never started.
        if *self.shutdown.borrow() {
            return false;
        }
        set.spawn(task.in_current_span());
        true
    }

    /// Resolves once the relay begins to stop.
    pub fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut shutdown = self.shutdown.clone();
        async move {
            // A dropped sender means the relay is gone: stopping too.
            let _ = shutdown.wait_for(|stop| *stop).await;
        }
    }

    /// Tasks running now.
    pub fn len(&self) -> usize {
        let mut set = self.set.lock().unwrap_or_else(PoisonError::into_inner);
        while set.try_join_next().is_some() {}
        set.len()
    }

    /// True when no task runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits for every task (call after the shutdown flag turned), up to
    /// `deadline`; aborts those still running then. Returns how many had
    /// to be aborted.
    pub async fn join(&self, deadline: Duration) -> usize {
        let mut set = std::mem::take(&mut *self.set.lock().unwrap_or_else(PoisonError::into_inner));
        let joined =
            tokio::time::timeout(deadline, async { while set.join_next().await.is_some() {} })
                .await;
        if joined.is_ok() {
            return 0;
        }
        let left = set.len();
        tracing::warn!(
            tasks = left,
            "relay tasks still running {} s after shutdown began: aborted",
            deadline.as_secs()
        );
        set.abort_all();
        while set.join_next().await.is_some() {}
        left
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn join_waits_for_started_work_and_stopping_ends_the_waits() {
        let (stop, stopped) = watch::channel(false);
        let tasks = Tasks::new(stopped);
        let finished = Arc::new(AtomicBool::new(false));
        let done = Arc::clone(&finished);
        let stopping = tasks.stopping();
        assert!(tasks.spawn(async move {
            stopping.await;
            // Work after the wait still runs to its end and is waited for.
            tokio::time::sleep(Duration::from_millis(100)).await;
            done.store(true, Ordering::SeqCst);
        }));
        assert_eq!(tasks.len(), 1);
        stop.send(true).unwrap();
        assert!(!tasks.spawn(async {}), "nothing starts once stopping");
        assert_eq!(tasks.join(Duration::from_secs(30)).await, 0);
        assert!(finished.load(Ordering::SeqCst));
        assert!(tasks.is_empty());
    }

    #[tokio::test]
    async fn a_task_that_ignores_the_stop_is_aborted_at_the_deadline() {
        let (stop, stopped) = watch::channel(false);
        let tasks = Tasks::new(stopped);
        assert!(tasks.spawn(std::future::pending()));
        stop.send(true).unwrap();
        assert_eq!(tasks.join(Duration::from_millis(50)).await, 1);
        assert!(tasks.is_empty());
    }
}
