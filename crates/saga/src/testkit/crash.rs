//! A journal that dies: after its k-th event write every call fails, as if the process had
//! been killed right after that write was committed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use uuid::Uuid;

use crate::event::EventRecord;
use crate::journal::{
    Append, AppendReceipt, Claim, CreateOutcome, Journal, JournalError, LeaseRequest, NewRun,
    RunFilter, RunRow,
};

#[derive(Debug)]
pub(crate) struct CrashingJournal {
    inner: Arc<dyn Journal>,
    /// Event writes (run creations and appends) allowed before the crash; `None` never crashes.
    limit: Option<usize>,
    writes: AtomicUsize,
    pub(crate) dead: Arc<AtomicBool>,
}

impl CrashingJournal {
    pub(crate) fn new(inner: Arc<dyn Journal>, limit: Option<usize>) -> Self {
        Self {
            inner,
            limit,
            writes: AtomicUsize::new(0),
            dead: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn writes(&self) -> usize {
        self.writes.load(Ordering::Acquire)
    }

    fn alive(&self) -> Result<(), JournalError> {
        if self.dead.load(Ordering::Acquire) {
            Err(JournalError::Unavailable("testkit: simulated crash".into()))
        } else {
            Ok(())
        }
    }

    /// Takes a write slot; the write that takes the last slot kills the journal after it.
    fn take_write(&self) -> Result<bool, JournalError> {
        self.alive()?;
        let n = self.writes.fetch_add(1, Ordering::AcqRel) + 1;
        match self.limit {
            Some(limit) if n > limit => {
                self.dead.store(true, Ordering::Release);
                Err(JournalError::Unavailable("testkit: simulated crash".into()))
            }
            Some(limit) => Ok(n == limit),
            None => Ok(false),
        }
    }
}

#[async_trait]
impl Journal for CrashingJournal {
    async fn create_run(&self, run: NewRun) -> Result<CreateOutcome, JournalError> {
        let last = self.take_write()?;
        let outcome = self.inner.create_run(run).await;
        if last {
            self.dead.store(true, Ordering::Release);
        }
        outcome
    }

    async fn append(&self, append: Append) -> Result<AppendReceipt, JournalError> {
        let last = self.take_write()?;
        let outcome = self.inner.append(append).await;
        if last {
            self.dead.store(true, Ordering::Release);
        }
        outcome
    }

    async fn claim(
        &self,
        lease: &LeaseRequest,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<Claim>, JournalError> {
        self.alive()?;
        self.inner.claim(lease, now_ms, limit).await
    }

    async fn renew(
        &self,
        lease: &LeaseRequest,
        held: &[Claim],
        now_ms: i64,
    ) -> Result<Vec<Claim>, JournalError> {
        self.alive()?;
        self.inner.renew(lease, held, now_ms).await
    }

    async fn run(&self, run_id: Uuid) -> Result<Option<RunRow>, JournalError> {
        self.alive()?;
        self.inner.run(run_id).await
    }

    async fn run_by_key(&self, key: &str) -> Result<Option<RunRow>, JournalError> {
        self.alive()?;
        self.inner.run_by_key(key).await
    }

    async fn events_since(
        &self,
        run_id: Uuid,
        after_seq: i64,
    ) -> Result<Vec<EventRecord>, JournalError> {
        self.alive()?;
        self.inner.events_since(run_id, after_seq).await
    }

    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRow>, JournalError> {
        self.alive()?;
        self.inner.list(filter).await
    }
}
