//! `provisioner`: parses the command line and hands over to the library.

use clap::Parser;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PROVISIONER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(provisioner::progress::LogWriter)
        // Colours only for a person at a terminal, never in a pipe or a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = provisioner::cli::Cli::parse();
    if let Err(e) = provisioner::cli::run(cli).await {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
