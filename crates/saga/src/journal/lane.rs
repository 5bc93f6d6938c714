//! The interactive lane: journal calls made while answering a person (an API request) get
//! connections and a commit loop of their own, so they never queue behind the workers'
//! batches of appends, claims and lookups. Which lane a call takes is the calling task's
//! business, marked once around the request by [`interactive`]; the journal's methods stay
//! the same for both.

use std::future::Future;

tokio::task_local! {
    static INTERACTIVE: ();
}

/// Runs `work` with every journal call it makes (in this task, not in tasks it spawns) on
/// the interactive lane. Journals without a separate lane (SQLite: one writer) ignore it.
pub async fn interactive<F: Future>(work: F) -> F::Output {
    INTERACTIVE.scope((), work).await
}

/// Whether the current task is inside [`interactive`].
pub(crate) fn is_interactive() -> bool {
    INTERACTIVE.try_with(|_| ()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_marked_task_is_interactive() {
        assert!(!is_interactive());
        assert!(interactive(async { is_interactive() }).await);
        // A task spawned from inside is the workers' business, not the request's.
        let spawned = interactive(async { tokio::spawn(async { is_interactive() }).await }).await;
        assert!(!spawned.unwrap());
        assert!(!is_interactive());
    }
}
