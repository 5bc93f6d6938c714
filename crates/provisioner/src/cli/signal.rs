//! The signals that stop a command: Ctrl-C and what a service manager sends.

/// SIGINT (Ctrl-C) or SIGTERM (what a service manager sends), whichever comes first. Made
/// before the work it guards starts, so neither signal can kill the process without cleanup
/// once it is listening.
#[derive(Debug)]
pub struct StopSignal {
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignal {
    pub fn listen() -> Self {
        let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGTERM"))
            .ok();
        StopSignal { terminate }
    }

    /// Resolves when either signal arrives.
    pub async fn received(&mut self) {
        let terminate = async {
            match &mut self.terminate {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminate => {}
        }
    }
}
