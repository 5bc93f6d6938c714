//! `provisioner`: parses the command line and hands over to the library.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = provisioner::cli::Cli::parse();
    provisioner::logging::init(cli.command.default_log_level());
    if let Err(e) = provisioner::cli::run(cli).await {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
