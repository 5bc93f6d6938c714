//! Group commit: writes that arrive while a transaction is committing are gathered into the
//! next one, so one fsync serves many runs and throughput grows with concurrency.
//! Each write keeps its own outcome: a fenced write fails alone, not its batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{
    Append, AppendReceipt, Claim, CreateOutcome, Delivery, DeliveryLease, DeliveryOutcome,
    JournalError, LeaseRequest, NewRun,
};

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
    ClaimDeliveries {
        lease: DeliveryLease,
        now_ms: i64,
        limit: u32,
    },
    FinishDelivery {
        delivery: Delivery,
        owner: String,
        now_ms: i64,
        outcome: DeliveryOutcome,
    },
}

#[derive(Debug)]
pub(crate) enum WriteDone {
    Created(CreateOutcome),
    Appended(AppendReceipt),
    Leases(Vec<Claim>),
    Deliveries(Vec<Delivery>),
    /// Whether the delivery's outcome was recorded (false: its lease was lost).
    Finished(bool),
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
    /// One commit loop per writer. With several, a batch gathers while another commits;
    /// a run's own writes never overlap, since each waits for the previous one's answer.
    pub(crate) fn spawn<W: BatchWriter>(writers: Vec<W>) -> Self {
        let (requests, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        let commits = Arc::new(AtomicU64::new(0));
        for writer in writers {
            tokio::spawn(commit_loop(writer, receiver.clone(), commits.clone()));
        }
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

    /// Outbox deliveries go through the committer like every write, so a claim never
    /// races a batch of the same process; both backends share these two.
    pub(crate) async fn claim_deliveries(
        &self,
        lease: &DeliveryLease,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<Delivery>, JournalError> {
        let op = WriteOp::ClaimDeliveries {
            lease: lease.clone(),
            now_ms,
            limit,
        };
        match self.submit(op).await? {
            WriteDone::Deliveries(d) => Ok(d),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn finish_delivery(
        &self,
        delivery: &Delivery,
        owner: &str,
        now_ms: i64,
        outcome: &DeliveryOutcome,
    ) -> Result<bool, JournalError> {
        let op = WriteOp::FinishDelivery {
            delivery: delivery.clone(),
            owner: owner.to_owned(),
            now_ms,
            outcome: outcome.clone(),
        };
        match self.submit(op).await? {
            WriteDone::Finished(recorded) => Ok(recorded),
            other => Err(unexpected(other)),
        }
    }
}

/// A writer's answer of another kind than the write asked for.
pub(crate) fn unexpected(done: WriteDone) -> JournalError {
    JournalError::Unavailable(format!("journal writer answered out of turn: {done:?}"))
}

async fn commit_loop<W: BatchWriter>(
    mut writer: W,
    receiver: Arc<Mutex<mpsc::UnboundedReceiver<Request>>>,
    commits: Arc<AtomicU64>,
) {
    let mut ops = Vec::new();
    let mut replies = Vec::new();
    loop {
        {
            let mut receiver = receiver.lock().await;
            let Some((op, reply)) = receiver.recv().await else {
                return;
            };
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
