//! Group commit: writes that arrive while a transaction is committing are gathered into the
//! next one, so one fsync serves many runs and throughput grows with concurrency.
//! Each write keeps its own outcome: a fenced write fails alone, not its batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use super::{Append, AppendReceipt, Claim, CreateOutcome, JournalError, LeaseRequest, NewRun};

/// Largest number of writes per transaction (bounds latency of one commit).
const MAX_BATCH: usize = 512;

#[derive(Debug)]
pub(crate) enum WriteOp {
    Create(NewRun),
    Append(Append),
    Claim {
        lease: LeaseRequest,
        now_ms: i64,
        limit: u32,
    },
    Renew {
        lease: LeaseRequest,
        held: Vec<Claim>,
        now_ms: i64,
    },
}

#[derive(Debug)]
pub(crate) enum WriteDone {
    Created(CreateOutcome),
    Appended(AppendReceipt),
    Leases(Vec<Claim>),
}

/// A backend's way of applying a batch of writes in one transaction.
#[async_trait]
pub(crate) trait BatchWriter: Send + 'static {
    /// Applies `ops` in one transaction. The outer error fails the whole batch (nothing was
    /// committed); inner errors belong to single writes that were skipped.
    async fn write_batch(
        &mut self,
        ops: &[WriteOp],
    ) -> Result<Vec<Result<WriteDone, JournalError>>, JournalError>;
}

type Request = (WriteOp, oneshot::Sender<Result<WriteDone, JournalError>>);

#[derive(Debug, Clone)]
pub(crate) struct GroupCommitter {
    requests: mpsc::UnboundedSender<Request>,
    commits: Arc<AtomicU64>,
}

impl GroupCommitter {
    pub(crate) fn spawn<W: BatchWriter>(writer: W) -> Self {
        let (requests, receiver) = mpsc::unbounded_channel();
        let commits = Arc::new(AtomicU64::new(0));
        tokio::spawn(commit_loop(writer, receiver, commits.clone()));
        Self { requests, commits }
    }

    /// Transactions committed so far.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    pub(crate) async fn submit(&self, op: WriteOp) -> Result<WriteDone, JournalError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send((op, reply))
            .map_err(|_| JournalError::Unavailable("journal writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| JournalError::Unavailable("journal writer has stopped".into()))?
    }
}

async fn commit_loop<W: BatchWriter>(
    mut writer: W,
    mut receiver: mpsc::UnboundedReceiver<Request>,
    commits: Arc<AtomicU64>,
) {
    let mut ops = Vec::new();
    let mut replies = Vec::new();
    while let Some((op, reply)) = receiver.recv().await {
        ops.push(op);
        replies.push(reply);
        while ops.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok((op, reply)) => {
                    ops.push(op);
                    replies.push(reply);
                }
                Err(_) => break,
            }
        }
        match writer.write_batch(&ops).await {
            Ok(outcomes) => {
                commits.fetch_add(1, Ordering::Relaxed);
                for (reply, outcome) in replies.drain(..).zip(outcomes) {
                    // The caller may have gone away (e.g. aborted); nothing to tell it then.
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
        ops.clear();
        replies.clear();
    }
}
