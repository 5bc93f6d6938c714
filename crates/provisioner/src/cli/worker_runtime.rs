//! The threads `serve` runs its workers on, apart from the ones answering HTTP.
//!
//! In one runtime a request's task queues behind whatever the workers' hundreds of run tasks
//! have made ready (parsing provider answers, building journal batches), so its latency is
//! the workers' backlog. On threads of their own, and at a lower OS priority, the workers
//! take what CPU the requests leave: the kernel, not tokio's queue, puts a request first.

use std::future::Future;

use tokio::runtime::{Builder, Handle, Runtime};

use super::CliError;

/// How much lower than the API's the workers' threads run (a nice value: 0 is the default,
/// 19 the lowest). Lower by 10 gives a busy API thread about ten times a worker thread's share
/// of a contended core, while idle API threads leave the workers every cycle.
pub const WORKER_NICENESS: i32 = 10;

/// The workers' threads' name (the kernel keeps its first 15 bytes: `provisioner-wor`).
pub const THREAD_NAME: &str = "provisioner-worker";

/// A multi-threaded runtime whose threads run at [`WORKER_NICENESS`] below the caller's.
#[derive(Debug)]
pub struct WorkerRuntime {
    handle: Handle,
    /// Taken only by `drop`.
    runtime: Option<Runtime>,
}

impl WorkerRuntime {
    pub fn start() -> Result<Self, CliError> {
        let runtime = Builder::new_multi_thread()
            .thread_name(THREAD_NAME)
            .enable_all()
            .on_thread_start(lower_this_threads_priority)
            .build()
            .map_err(|e| CliError::internal(format!("cannot start the workers' threads: {e}")))?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// Runs `work` on the workers' threads: tasks it spawns (the claim loop, each run's task,
    /// the notification loops) stay there.
    pub async fn run<F>(&self, work: F) -> Result<F::Output, CliError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle
            .spawn(work)
            .await
            .map_err(|e| CliError::internal(format!("the workers' start-up failed: {e}")))
    }
}

impl Drop for WorkerRuntime {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which an async caller may not do; by now
        // the workers have been stopped, so nothing of theirs is left to wait for.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(target_os = "linux")]
fn lower_this_threads_priority() {
    // On Linux a nice value belongs to a thread, so this lowers only the thread starting.
    let tid = rustix::thread::gettid();
    let current = rustix::process::getpriority_process(Some(tid)).unwrap_or(0);
    if let Err(e) = rustix::process::setpriority_process(Some(tid), current + WORKER_NICENESS) {
        tracing::warn!(error = %e, "could not lower a worker thread's priority; the API shares the CPU with the workers evenly");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority() {}

#[cfg(all(test, target_os = "linux"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn nice_of_this_thread() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn work_runs_on_threads_below_the_callers_priority() {
        let callers = nice_of_this_thread();
        let runtime = WorkerRuntime::start().unwrap();
        let (theirs, spawned, name) = runtime
            .run(async {
                // A task the work spawns runs there too.
                let spawned = tokio::spawn(async { nice_of_this_thread() }).await.unwrap();
                let name = std::thread::current().name().map(str::to_owned);
                (nice_of_this_thread(), spawned, name)
            })
            .await
            .unwrap();
        let expected = (callers + WORKER_NICENESS).min(19);
        assert_eq!(theirs, expected);
        assert_eq!(spawned, expected);
        assert_eq!(name.as_deref(), Some(THREAD_NAME));
        assert_eq!(
            nice_of_this_thread(),
            callers,
            "the caller's thread is left as it was"
        );
        drop(runtime);
    }
}
