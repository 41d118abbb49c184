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
    /// Benchmark an OpenAI-compatible endpoint (or the built-in simulator) from here.
    Bench(Box<inferops::cli::bench::BenchArgs>),
    /// Run a load plan (the in-cluster load Job) and write the results JSON.
    Loadgen(inferops::cli::bench::LoadgenArgs),
    /// Run the vLLM-compatible simulated engine (OpenAI API, vllm:* and DCGM-style metrics).
    Sim(inferops::sim::SimArgs),
    /// Write an HTML + Markdown report with charts from a results JSON or a BenchmarkRun.
    Report(inferops::cli::report::ReportArgs),
    /// Print every object the operator would create for the resources in a file.
    Render(inferops::cli::render::RenderArgs),
    /// Print both CRDs (InferenceService, BenchmarkRun) as multi-document YAML.
    Crds,
    /// Run the operator: the InferenceService and BenchmarkRun controllers.
    Operator(inferops::controller::OperatorArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(args) => inferops::cli::bench::bench(*args).await,
        Command::Loadgen(args) => inferops::cli::bench::loadgen(args).await,
        Command::Sim(args) => inferops::sim::run(args).await,
        Command::Report(args) => args.run().await,
        Command::Render(args) => args.run(),
        Command::Crds => {
            print!("{}", inferops::api::crds_yaml());
            Ok(())
        }
        Command::Operator(args) => inferops::controller::run(args).await,
    }
}
