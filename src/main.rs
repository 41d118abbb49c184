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
    /// Print both CRDs (InferenceService, BenchmarkRun) as multi-document YAML.
    Crds,
    /// Print every object the operator would create for the resources in a file.
    Render(inferops::render::cli::RenderArgs),
    /// Run the operator: controllers, leader election, health and metrics endpoints.
    Operator(inferops::controller::OperatorArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds => {
            print!("{}", inferops::api::crds_yaml());
            Ok(())
        }
        Command::Render(args) => args.run(),
        Command::Operator(args) => inferops::controller::run(args).await,
    }
}
