//! The clock an attempt's timeout is measured on, which a step may stop while it waits its
//! turn rather than works.
//!
//! A step's timeout catches a provider call that hangs. Waiting in a queue the step itself
//! chose to respect (a provider's rate window, which for GitHub's repository generations is an
//! hour long) is not hanging: counted against the timeout, it would fail every attempt of the
//! clients a big batch queues last, however long their turn is. A step marks such waits with
//! [`AttemptClock::pause`] on the clock [`current`] returns; the attempt times out only when
//! the time outside every pause passes its timeout.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    static CLOCK: Arc<AttemptClock>;
}

/// The clock of the attempt running on this task, if any (an action or undo the engine runs).
pub fn current() -> Option<Arc<AttemptClock>> {
    CLOCK.try_with(Arc::clone).ok()
}

#[derive(Debug, Default)]
struct Stopped {
    /// Pauses open now (they may nest or overlap: calls side by side).
    open: u32,
    /// When the first of the open pauses began.
    since: Option<Instant>,
    /// Time within pauses that have all ended.
    total: Duration,
}

/// One attempt's clock.
#[derive(Debug)]
pub struct AttemptClock {
    started: Instant,
    stopped: Mutex<Stopped>,
}

/// The clock stands still until this is dropped.
#[derive(Debug)]
pub struct Pause {
    clock: Arc<AttemptClock>,
}

impl Drop for Pause {
    fn drop(&mut self) {
        let mut stopped = self.clock.lock();
        stopped.open = stopped.open.saturating_sub(1);
        if stopped.open == 0
            && let Some(since) = stopped.since.take()
        {
            stopped.total += since.elapsed();
        }
    }
}

impl AttemptClock {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            stopped: Mutex::new(Stopped::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stopped> {
        self.stopped.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the clock until the returned guard is dropped.
    pub fn pause(self: &Arc<Self>) -> Pause {
        let mut stopped = self.lock();
        if stopped.open == 0 {
            stopped.since = Some(Instant::now());
        }
        stopped.open += 1;
        Pause {
            clock: Arc::clone(self),
        }
    }

    /// Time since the attempt started, outside every pause.
    pub fn counted(&self) -> Duration {
        let stopped = self.lock();
        let open = stopped
            .since
            .map_or(Duration::ZERO, |since| since.elapsed());
        self.started.elapsed().saturating_sub(stopped.total + open)
    }
}

/// Runs `attempt` with a clock of its own; `Err(())` when its counted time passed `timeout`.
pub(crate) async fn run_with_timeout<F: Future>(
    timeout: Duration,
    attempt: F,
) -> Result<F::Output, ()> {
    let clock = Arc::new(AttemptClock::new());
    let attempt = CLOCK.scope(Arc::clone(&clock), attempt);
    tokio::pin!(attempt);
    loop {
        let left = timeout.saturating_sub(clock.counted());
        if left.is_zero() {
            return Err(());
        }
        tokio::select! {
            output = &mut attempt => return Ok(output),
            // Paused meanwhile: the time left is longer than it was; look again.
            () = tokio::time::sleep(left) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_attempt_times_out_on_the_time_it_works() {
        let outcome = run_with_timeout(Duration::from_millis(100), async {
            tokio::time::sleep(Duration::from_millis(300)).await;
        })
        .await;
        assert_eq!(outcome, Err(()));
    }

    #[tokio::test(start_paused = true)]
    async fn time_in_a_pause_does_not_count_against_the_timeout() {
        let begun = Instant::now();
        let outcome = run_with_timeout(Duration::from_millis(100), async {
            let clock = current().expect("an attempt has a clock");
            {
                let _waiting = clock.pause();
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            tokio::time::sleep(Duration::from_millis(60)).await;
            clock.counted()
        })
        .await;
        let counted = outcome.expect("only 60 ms were counted");
        assert!(counted >= Duration::from_millis(60) && counted < Duration::from_millis(100));
        assert!(begun.elapsed() >= Duration::from_secs(3600));
    }

    #[tokio::test(start_paused = true)]
    async fn work_after_a_pause_still_times_out() {
        let outcome = run_with_timeout(Duration::from_millis(100), async {
            let clock = current().expect("an attempt has a clock");
            drop(clock.pause());
            let both = (clock.pause(), clock.pause());
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(both);
            tokio::time::sleep(Duration::from_millis(300)).await;
        })
        .await;
        assert_eq!(outcome, Err(()));
    }

    #[test]
    fn there_is_no_clock_outside_an_attempt() {
        assert!(current().is_none());
    }
}
