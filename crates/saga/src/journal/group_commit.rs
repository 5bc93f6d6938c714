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
        /// Leave the rows other transactions hold and answer them as busy
        /// ([`WriteDone::Renewed`]), rather than wait for them. A backend whose writes never
        /// wait on one another (SQLite's one writer) may ignore it.
        skip_busy: bool,
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
    /// A renewal that skipped busy rows: what it renewed, and what it left to try again.
    Renewed {
        renewed: Vec<Claim>,
        busy: Vec<Claim>,
    },
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

/// The two queues a commit loop takes writes from: lease renewals first, then the rest.
type Queues = (
    mpsc::UnboundedReceiver<Request>,
    mpsc::UnboundedReceiver<Request>,
);

#[derive(Debug, Clone)]
pub(crate) struct GroupCommitter {
    requests: mpsc::UnboundedSender<Request>,
    /// Lease renewals, which go into the next transaction ahead of every queued write: with
    /// thousands of runs writing, a renewal queued behind them would land after the leases it
    /// renews had lapsed.
    renewals: mpsc::UnboundedSender<Request>,
    commits: Arc<AtomicU64>,
}

impl GroupCommitter {
    /// One commit loop per writer. With several, a batch gathers while another commits;
    /// a run's own writes never overlap, since each waits for the previous one's answer.
    pub(crate) fn spawn<W: BatchWriter>(writers: Vec<W>) -> Self {
        let (requests, receiver) = mpsc::unbounded_channel();
        let (renewals, renewals_receiver) = mpsc::unbounded_channel();
        let queues = Arc::new(Mutex::new((renewals_receiver, receiver)));
        let commits = Arc::new(AtomicU64::new(0));
        for writer in writers {
            tokio::spawn(commit_loop(writer, queues.clone(), commits.clone()));
        }
        Self {
            requests,
            renewals,
            commits,
        }
    }

    /// Transactions committed so far.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    pub(crate) async fn submit(&self, op: WriteOp) -> Result<WriteDone, JournalError> {
        let (reply, answer) = oneshot::channel();
        let queue = match op {
            WriteOp::Renew { .. } => &self.renewals,
            _ => &self.requests,
        };
        queue
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
    queues: Arc<Mutex<Queues>>,
    commits: Arc<AtomicU64>,
) {
    let mut ops = Vec::new();
    let mut replies = Vec::new();
    let mut renewals_closed = false;
    loop {
        {
            let mut queues = queues.lock().await;
            let (renewals, requests) = &mut *queues;
            let first = loop {
                tokio::select! {
                    biased;
                    renewal = renewals.recv(), if !renewals_closed => match renewal {
                        Some(request) => break Some(request),
                        None => renewals_closed = true,
                    },
                    request = requests.recv() => break request,
                }
            };
            let Some((op, reply)) = first else {
                return;
            };
            let renewing = matches!(op, WriteOp::Renew { .. });
            ops.push(op);
            replies.push(reply);
            // A transaction of renewals carries nothing else: with thousands of runs writing,
            // filling it with their writes made it, and the round of renewals it answers,
            // last seconds (ten at 10,000 runs starting at once).
            let queues = if renewing {
                [Some(renewals), None]
            } else {
                [Some(renewals), Some(requests)]
            };
            for queue in queues.into_iter().flatten() {
                while ops.len() < MAX_BATCH {
                    match queue.try_recv() {
                        Ok((op, reply)) => {
                            ops.push(op);
                            replies.push(reply);
                        }
                        Err(_) => break,
                    }
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;
    use std::time::Duration;

    use super::*;

    /// Records which kinds of writes each transaction held, taking 20 ms per transaction.
    struct Recording(Arc<StdMutex<Vec<Vec<&'static str>>>>);

    #[async_trait]
    impl BatchWriter for Recording {
        async fn write_batch(
            &mut self,
            ops: &[WriteOp],
        ) -> Result<Vec<Result<WriteDone, JournalError>>, JournalError> {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let kinds = ops
                .iter()
                .map(|op| match op {
                    WriteOp::Renew { .. } => "renew",
                    _ => "other",
                })
                .collect();
            self.0.lock().unwrap().push(kinds);
            Ok(ops
                .iter()
                .map(|_| Ok(WriteDone::Leases(Vec::new())))
                .collect())
        }
    }

    fn lease() -> LeaseRequest {
        LeaseRequest {
            worker: "w".into(),
            lease_ms: 8_000,
            environment: None,
        }
    }

    #[tokio::test]
    async fn a_renewal_goes_alone_into_the_next_transaction_ahead_of_queued_writes() {
        let batches = Arc::new(StdMutex::new(Vec::new()));
        let committer = GroupCommitter::spawn(vec![Recording(batches.clone())]);
        // Four transactions' worth of writes queued before the renewal.
        let mut queued = Vec::new();
        for _ in 0..(4 * MAX_BATCH) {
            let committer = committer.clone();
            queued.push(tokio::spawn(async move {
                committer
                    .submit(WriteOp::Claim {
                        lease: lease(),
                        now_ms: 0,
                        limit: 1,
                    })
                    .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        committer
            .submit(WriteOp::Renew {
                lease: lease(),
                held: Vec::new(),
                now_ms: 0,
                skip_busy: true,
            })
            .await
            .unwrap();
        for write in queued {
            write.await.unwrap().unwrap();
        }
        let batches = batches.lock().unwrap();
        let with_renewal = batches
            .iter()
            .position(|kinds| kinds.contains(&"renew"))
            .unwrap();
        // The transaction under way when it came may finish first; the next one takes it,
        // and nothing else.
        assert!(
            with_renewal <= 1,
            "renewal in transaction {with_renewal} of {}",
            batches.len()
        );
        assert_eq!(batches[with_renewal], ["renew"]);
        assert!(batches.len() >= 4);
    }
}
