use clap::{Parser, Subcommand};

/// inferops: serve LLMs on Kubernetes GPU pools and benchmark them.
#[derive(Parser)]
#[command(name = "inferops", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the vLLM-compatible simulated engine
    Sim(inferops::sim::SimArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(args) => inferops::sim::run(args).await,
    }
}
