//! `studio`: serve the platform, or manage it from the command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use studio_api::config::Config;
use studio_api::db::Database;
use studio_api::tenancy::accounts;

// The API allocates many small, short-lived values per request (rows, JSON); glibc's allocator
// spent a fifth of the time of a list request (bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "studio",
    version,
    about = "A self-hostable video platform that speaks the Livepeer Studio API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Manage API keys.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
    /// Print the OpenAPI document.
    Openapi,
}

/// Where the data lives; shared by every command that opens the database.
///
/// Flags are plain flags: settings come from the environment through `Config::load` alone (one
/// reader, one set of rules), and a flag given overrides what it says. Only variables that are
/// not settings are read here.
#[derive(Args, Clone)]
struct StoreArgs {
    /// A TOML config file (see README.md for the keys).
    #[arg(long, env = "STUDIO_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for the SQLite database and local media (setting data_dir, or STUDIO_DATA_DIR).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://USER@HOST:PORT/DB` (setting database_url, or
    /// STUDIO_DATABASE_URL).
    #[arg(long)]
    database_url: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Address of the HTTP API (setting http_addr, or STUDIO_HTTP_ADDR).
    #[arg(long)]
    http_addr: Option<SocketAddr>,
    /// Address of the RTMP ingest (setting rtmp_addr, or STUDIO_RTMP_ADDR).
    #[arg(long)]
    rtmp_addr: Option<SocketAddr>,
    /// Address (UDP) of the SRT ingest (setting srt_addr, or STUDIO_SRT_ADDR).
    #[arg(long)]
    srt_addr: Option<SocketAddr>,
    /// Address (UDP) of WebRTC: WHIP ingest and WHEP playback (setting webrtc_addr, or
    /// STUDIO_WEBRTC_ADDR).
    #[arg(long)]
    webrtc_addr: Option<SocketAddr>,
    /// Base URL used in URLs the API returns (setting public_url, or STUDIO_PUBLIC_URL).
    #[arg(long)]
    public_url: Option<String>,
    /// Where media objects live: `file:///path` or `s3://bucket/optional/prefix` (setting
    /// storage.url, or STUDIO_STORAGE__URL; S3 credentials, region and endpoint from the
    /// standard AWS_* variables).
    #[arg(long)]
    storage_url: Option<String>,
    /// Deliver webhooks to loopback and private addresses (setting
    /// webhooks.allow_private_destinations, or STUDIO_WEBHOOKS__ALLOW_PRIVATE_DESTINATIONS).
    #[arg(long)]
    allow_private_destinations: bool,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "STUDIO_LOG_JSON", value_parser = clap::builder::BoolishValueParser::new())]
    log_json: bool,
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create an API key (and the local user and project when missing); prints one JSON line.
    Create(ApiKeyCreateArgs),
}

#[derive(Args)]
struct ApiKeyCreateArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// A name to recognize the key by.
    #[arg(long)]
    name: String,
    /// The project the key works in; created when missing.
    #[arg(long, default_value = accounts::DEFAULT_PROJECT)]
    project: String,
    /// An operator key: also manages projects and API keys, of every project on the server
    /// (whatever --project says).
    #[arg(long)]
    admin: bool,
}

impl StoreArgs {
    /// Defaults, then the file, then the environment, then these flags.
    fn load(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref(), std::env::vars())?;
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(url) = &self.database_url {
            config.database_url = Some(url.clone());
        }
        Ok(config)
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::ApiKey(ApiKeyCommand::Create(args)) => runtime.block_on(create_api_key(args)),
        Command::Openapi => {
            print!("{}", studio_api::openapi::document_json());
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    studio_api::logging::init(args.log_json);
    let mut config = args.store.load()?;
    if let Some(addr) = args.http_addr {
        config.http_addr = addr;
    }
    if let Some(addr) = args.rtmp_addr {
        config.rtmp_addr = addr;
    }
    if let Some(addr) = args.srt_addr {
        config.srt_addr = addr;
    }
    if let Some(addr) = args.webrtc_addr {
        config.webrtc_addr = addr;
    }
    if let Some(url) = args.public_url {
        config.public_url = Some(url);
    }
    if let Some(url) = args.storage_url {
        config.storage.url = Some(url);
    }
    if args.allow_private_destinations {
        config.webhooks.allow_private_destinations = true;
    }
    let server = studio_api::app::start(config).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.stop().await
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}

async fn create_api_key(args: ApiKeyCreateArgs) -> anyhow::Result<()> {
    // Warnings go to stderr; stdout carries the one JSON line.
    studio_api::logging::init(false);
    let config = args.store.load()?;
    config.validate()?;
    let db = Database::connect(&config.database_url(), 2).await?;
    db.migrate().await?;
    let mut tx = db.begin().await?;
    let user_id = accounts::ensure_user(&mut tx, accounts::LOCAL_USER).await?;
    let project = accounts::ensure_project(&mut tx, &user_id, &args.project).await?;
    let key =
        accounts::create_key(&mut tx, &user_id, &project.id, &args.name, args.admin, None).await?;
    tx.commit().await.context("saving the API key")?;
    db.close().await;
    let line = serde_json::json!({
        "key": key.key,
        "id": key.id,
        "projectId": project.id,
        "userId": user_id,
    });
    println!("{line}");
    Ok(())
}
