//! `aimp`: a self-hosted vector search engine with an embedded AIMP gateway.

mod allocator;
mod cli;
mod settings;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use settings::{LogFormat, ModelSettings, ServeSettings, StoreSettings};

/// Shown under `aimp --help`: a line to copy for each command.
const EXAMPLES: &str = "\
Examples:
  aimp serve                                        start the gateway on ./data (port 8080)
  aimp keys create --name laptop                    make an API key (printed once)
  aimp models list                                  the models, installed or not
  aimp index ~/Pictures --scope photos              upload and index a folder (resumable)
  aimp index --texts notes.jsonl --scope notes      index texts with demo-model
  aimp search --scope photos --text \"a red bike\"    the best matches of a scope
  aimp bench ann --base b.fvecs --query q.fvecs --out r.json
                                                    recall and queries/s of the index
  aimp store copy --from ./data --to postgres://aimp@db/aimp
                                                    move everything to PostgreSQL (resumable)
  aimp snapshot create --out backup.tar             archive the store (verified on restore)

Every setting is also an AIMP_* environment variable (see a command's --help).

Exit codes: 0 done; 1 the command failed (the message says why and what to do);
2 the command line is wrong; 130 interrupted.";

#[derive(Parser, Debug)]
#[command(
    name = "aimp",
    version,
    about = "Self-hosted vector search with an embedded AIMP gateway",
    after_help = EXAMPLES
)]
struct Cli {
    /// Log format on stderr (`RUST_LOG` sets the level; default info).
    #[arg(
        long,
        env = "AIMP_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true,
        help_heading = "Logging"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the gateway (installs the default model on first start unless offline).
    Serve(Box<ServeSettings>),
    /// Manage API keys in the data directory (stop `serve` first, or use /api/api-keys/).
    Keys(KeysArgs),
    /// List, install and import models.
    Models(ModelsArgs),
    /// Upload and index every picture under a folder through a running gateway (resumable).
    Index(cli::index::IndexArgs),
    /// Search a scope of a running gateway by text or by picture.
    Search(cli::search::SearchArgs),
    /// ANN benchmarks: recall, speed and memory of our index, hnsw_rs and exact search.
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
    /// Move data between stores: `aimp store copy --from ./data --to postgres://…`.
    Store(StoreArgs),
    /// Archive the store to a file, or restore one: `aimp snapshot create --out s.tar`.
    Snapshot(SnapshotArgs),
}

#[derive(Args, Debug)]
struct SnapshotArgs {
    #[command(subcommand)]
    command: cli::snapshot::SnapshotCommand,
    #[command(flatten)]
    store: StoreSettings,
}

#[derive(Args, Debug)]
struct StoreArgs {
    #[command(subcommand)]
    command: cli::store::StoreCommand,
    #[command(flatten)]
    store: StoreSettings,
}

#[derive(Args, Debug)]
struct KeysArgs {
    #[command(subcommand)]
    command: cli::keys::KeysCommand,
    #[command(flatten)]
    store: StoreSettings,
}

#[derive(Args, Debug)]
struct ModelsArgs {
    #[command(subcommand)]
    command: cli::models::ModelsCommand,
    #[command(flatten)]
    models: ModelSettings,
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

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(settings) => cli::serve::run(*settings),
        Command::Keys(args) => cli::keys::run(&args.store, args.command),
        Command::Models(args) => cli::models::run(&args.models, args.command),
        Command::Index(args) => cli::index::run(&cli::client(&args.gateway)?, &args),
        Command::Search(args) => cli::search::run(&cli::client(&args.gateway)?, &args),
        Command::Bench(cmd) => cli::bench::run(cmd),
        Command::Store(args) => cli::store::run(&args.store, args.command),
        Command::Snapshot(args) => cli::snapshot::run(&args.store, args.command),
    }
}

fn main() -> ExitCode {
    allocator::limit_arenas();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", cli::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
