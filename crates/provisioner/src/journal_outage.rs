//! Riding out a journal that stops answering for a while: its PostgreSQL server restarting, the
//! network, a full disk under a SQLite journal. What waits on runs (`batch`, `watch`, a command
//! following its run, the API's event stream) retries the journal errors that may pass
//! ([`saga::JournalError::is_transient`]) with backoff, says on stderr that the journal is being
//! retried and what to do, and ends with an error naming the journal only once it has failed
//! that way for [`OUTAGE_LIMIT`] without a break.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use saga::{EngineError, JournalError};

use crate::app::AppError;

/// How long the journal may keep failing transiently before a wait on it gives up.
pub const OUTAGE_LIMIT: Duration = Duration::from_secs(300);

/// How a wait retries a journal that does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    /// Transient failures for this long without a success end the wait with an error.
    pub limit: Duration,
    /// The first pause between attempts; it doubles up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Patience {
    fn default() -> Self {
        Self {
            limit: OUTAGE_LIMIT,
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// Where a wait tells the operator about the outage (a CLI: stderr; the server: its log).
pub type Notice = fn(&str);

/// The notice of a process with no terminal to speak to: a warning in its log.
pub fn log_notice(line: &str) {
    tracing::warn!("{line}");
}

/// An error that may hold a journal error a retry can get past.
pub trait JournalFailure: Sized {
    fn transient_journal_error(&self) -> Option<&JournalError>;
    /// The error a wait ends with once the journal has failed for its whole patience.
    fn lasting(error: JournalError) -> Self;
}

impl JournalFailure for EngineError {
    fn transient_journal_error(&self) -> Option<&JournalError> {
        match self {
            Self::Journal(e) if e.is_transient() => Some(e),
            _ => None,
        }
    }
    fn lasting(error: JournalError) -> Self {
        Self::Journal(error)
    }
}

impl JournalFailure for AppError {
    fn transient_journal_error(&self) -> Option<&JournalError> {
        match self {
            Self::Engine(e) => e.transient_journal_error(),
            _ => None,
        }
    }
    fn lasting(error: JournalError) -> Self {
        Self::Engine(EngineError::Journal(error))
    }
}

/// What the operator reads while the journal fails: what is wrong and what to do.
fn outage_line(error: &JournalError, limit: Duration) -> String {
    let minutes = limit.as_secs().div_ceil(60);
    if error.is_disk_full() {
        format!(
            "the journal cannot write: its disk is full ({error}); free space on the disk that holds the journal; retrying for up to {minutes} min"
        )
    } else {
        format!(
            "the journal is unreachable ({error}); check that its database server is up and reachable; retrying for up to {minutes} min"
        )
    }
}

/// The process's outage as told so far: since when, and when it was last said. Every wait
/// shares it, so ten clients of a batch waiting on one journal print one line, not ten.
static TOLD: Mutex<Option<(Instant, Instant)>> = Mutex::new(None);

/// How often a lasting outage is said again.
const REMIND_EVERY: Duration = Duration::from_secs(15);

fn told() -> std::sync::MutexGuard<'static, Option<(Instant, Instant)>> {
    // Only ever replaced whole: a panic elsewhere cannot leave it half-changed.
    TOLD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn tell_failure(notice: Notice, error: &JournalError, limit: Duration) {
    let now = Instant::now();
    let mut told = told();
    match *told {
        Some((_, last)) if now.duration_since(last) < REMIND_EVERY => {}
        Some((since, _)) => {
            *told = Some((since, now));
            notice(&format!(
                "{} (failing for {} s)",
                outage_line(error, limit),
                now.duration_since(since).as_secs()
            ));
        }
        None => {
            *told = Some((now, now));
            notice(&outage_line(error, limit));
        }
    }
}

fn tell_recovery(notice: Notice) {
    let mut told = told();
    if let Some((since, _)) = told.take() {
        notice(&format!(
            "the journal answers again after {} s; going on",
            since.elapsed().as_secs()
        ));
    }
}

/// Runs `operation` until it succeeds, fails in a way a retry cannot mend, or has failed
/// transiently for `patience.limit` without a break; then the error names the journal and how
/// long it did not answer. `operation` must be safe to run again (a read, or a write the
/// journal deduplicates such as a start keyed by client).
pub async fn retrying<T, E, F, Fut>(
    patience: &Patience,
    notice: Notice,
    mut operation: F,
) -> Result<T, E>
where
    E: JournalFailure,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut failing_since: Option<Instant> = None;
    let mut delay = patience.first_delay;
    loop {
        let error = match operation().await {
            Ok(value) => {
                if failing_since.is_some() {
                    tell_recovery(notice);
                }
                return Ok(value);
            }
            Err(e) => e,
        };
        let Some(journal) = error.transient_journal_error() else {
            return Err(error);
        };
        let since = *failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= patience.limit {
            return Err(E::lasting(JournalError::Unavailable(format!(
                "the journal did not answer for {} s, giving up (the runs are journaled; run the same command again once it answers): {journal}",
                since.elapsed().as_secs()
            ))));
        }
        tell_failure(notice, journal, patience.limit);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(patience.max_delay);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    static SAID: Mutex<Vec<String>> = Mutex::new(Vec::new());

    fn capture(line: &str) {
        SAID.lock().unwrap().push(line.to_owned());
    }

    fn said() -> Vec<String> {
        SAID.lock().unwrap().clone()
    }

    /// A real transient failure: the journal's server refuses the connection.
    async fn refused() -> EngineError {
        use sqlx::Connection;
        let error = sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:1/postgres")
            .await
            .expect_err("nothing listens on port 1");
        EngineError::Journal(JournalError::from(error))
    }

    fn quick(limit_ms: u64) -> Patience {
        Patience {
            limit: Duration::from_millis(limit_ms),
            first_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(50),
        }
    }

    #[tokio::test]
    async fn an_outage_is_retried_said_and_ridden_out_and_a_lasting_one_ends_naming_the_journal() {
        let refused = refused().await;
        let calls = AtomicUsize::new(0);
        let answered = retrying(&quick(5_000), capture, || {
            let call = calls.fetch_add(1, Ordering::Relaxed);
            let refused = refused.clone_journal();
            async move { if call < 3 { Err(refused) } else { Ok(call) } }
        })
        .await
        .unwrap();
        assert_eq!(answered, 3);
        let lines = said();
        assert!(
            lines[0].starts_with("the journal is unreachable (")
                && lines[0].contains("retrying for up to 1 min"),
            "{lines:?}"
        );
        assert!(
            lines
                .last()
                .unwrap()
                .starts_with("the journal answers again after"),
            "{lines:?}"
        );

        let calls = AtomicUsize::new(0);
        let began = Instant::now();
        let lasting = retrying(&quick(300), capture, || {
            calls.fetch_add(1, Ordering::Relaxed);
            let refused = refused.clone_journal();
            async move { Err::<(), _>(refused) }
        })
        .await
        .unwrap_err();
        assert!(began.elapsed() >= Duration::from_millis(300));
        assert!(calls.load(Ordering::Relaxed) >= 3);
        let message = lasting.to_string();
        assert!(
            message.contains("the journal did not answer for") && message.contains("giving up"),
            "{message}"
        );
        assert!(
            !lasting.is_transient(),
            "a wait that gave up is not retried again"
        );
    }

    #[tokio::test]
    async fn an_error_a_retry_cannot_mend_ends_the_wait_at_once() {
        let calls = AtomicUsize::new(0);
        let missing = uuid::Uuid::now_v7();
        let error = retrying(&quick(5_000), capture, || {
            calls.fetch_add(1, Ordering::Relaxed);
            async move { Err::<(), _>(EngineError::NotFound(missing)) }
        })
        .await
        .unwrap_err();
        assert!(matches!(error, EngineError::NotFound(id) if id == missing));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }

    trait CloneJournal {
        fn clone_journal(&self) -> EngineError;
    }

    impl CloneJournal for EngineError {
        fn clone_journal(&self) -> EngineError {
            match self {
                EngineError::Journal(e) => EngineError::Journal(e.clone()),
                other => panic!("not a journal error: {other}"),
            }
        }
    }
}
