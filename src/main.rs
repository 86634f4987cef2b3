//! `aimp`: a self-hosted vector search engine with an embedded AIMP gateway.

mod allocator;
mod cli;
mod settings;

use clap::{Parser, Subcommand};

use settings::{LogFormat, Settings};

#[derive(Parser, Debug)]
#[command(
    name = "aimp",
    version,
    about = "Self-hosted vector search with an embedded AIMP gateway"
)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the gateway (installs the default model on first start unless offline).
    Serve,
    /// Manage API keys in the data directory (stop `serve` first, or use /api/api-keys/).
    #[command(subcommand)]
    Keys(cli::keys::KeysCommand),
    /// List, install and import models.
    #[command(subcommand)]
    Models(cli::models::ModelsCommand),
    /// Upload and index every picture under a folder through a running gateway (resumable).
    Index(cli::index::IndexArgs),
    /// Search a scope of a running gateway by text or by picture.
    Search(cli::search::SearchArgs),
    /// ANN benchmarks: recall, speed and memory of our index, hnsw_rs and exact search.
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,hnsw_rs=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
    allocator::limit_arenas();
    let cli = Cli::parse();
    init_logging(cli.settings.log_format);
    match cli.command {
        Command::Serve => cli::serve::run(cli.settings),
        Command::Keys(cmd) => cli::keys::run(&cli.settings, cmd),
        Command::Models(cmd) => cli::models::run(&cli.settings, cmd),
        Command::Index(args) => cli::index::run(&cli::client(&cli.settings)?, &args),
        Command::Search(args) => cli::search::run(&cli::client(&cli.settings)?, &args),
        Command::Bench(cmd) => cli::bench::run(&cli.settings, cmd),
    }
}
