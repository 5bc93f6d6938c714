//! The flag that tells a run's task its lease is gone, and wakes it at once: a task that
//! lost its lease must stop calling providers, not only stop writing.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub(crate) struct LeaseLost {
    lost: AtomicBool,
    notify: Notify,
}

impl LeaseLost {
    pub(crate) fn set(&self) {
        self.lost.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_set(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Returns once the lease is lost (at once if it already is).
    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a `set` in between still wakes us.
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}
