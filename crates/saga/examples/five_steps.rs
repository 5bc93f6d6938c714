//! Runs the five-step saga (A; B after A; C; D after A and C; E) on a SQLite journal in a
//! temporary directory, printing each event as it is committed and then the final state.
#![allow(clippy::print_stdout)] // printing the run is what this example is for
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/five_steps.rs"]
#[allow(dead_code)] // the test kit's subject lives here too
mod five_steps;

use std::sync::Arc;
use std::time::Duration;

use five_steps::{MemoryWorld, SAGA, definition, input};
use saga::{Engine, Registry, RunEvent, SealingKey, SqliteJournal};

fn describe(event: &RunEvent) -> String {
    match event {
        RunEvent::StepStarted { step, attempt } => {
            format!("step_started    {step} (attempt {attempt})")
        }
        RunEvent::StepSucceeded { step, output, .. } => {
            format!("step_succeeded  {step} -> {output}")
        }
        other => serde_json::to_string(other).unwrap_or_else(|_| other.kind().to_owned()),
    }
}

/// Takes no options; parsed so that `--help` says what the example does.
#[derive(Debug, clap::Parser)]
#[command(
    about = "Runs the five-step saga on a temporary SQLite journal, printing each event as it is committed.",
    after_help = "Example:\n  cargo run -p saga --example five_steps"
)]
struct Args {}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = <Args as clap::Parser>::parse();
    let dir = tempfile::tempdir()?;
    let journal = Arc::new(SqliteJournal::open(dir.path().join("journal.db")).await?);
    let world = Arc::new(MemoryWorld::default());
    let registry = Registry::new().with(definition(&world))?;
    // Step A's output holds a secret token: it is sealed before it reaches the journal.
    let (key, _) = SealingKey::generate();
    let engine = Engine::builder(journal, registry)
        .sealing_key(key)
        .lease(Duration::from_secs(5))
        .build();

    let mut events = engine.subscribe();
    let printer = tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            println!("#{:<3} {}", e.seq, describe(&e.event));
        }
    });
    let workers = engine.run_workers();
    let started = engine.start(SAGA, "client-acme", &input("acme")).await?;
    println!(
        "started run {} (created: {})",
        started.run_id, started.created
    );
    let view = engine.wait_for(started.run_id).await?;
    workers.shutdown(Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    printer.abort();

    println!("\nrun {} ended {}", view.id, view.status);
    for step in &view.steps {
        println!(
            "  {:<2} {:<10?} attempt {} after [{}]",
            step.name,
            step.phase,
            step.attempt,
            step.dependencies.join(", ")
        );
    }
    println!("world: {:?}", world.snapshot());
    Ok(())
}
