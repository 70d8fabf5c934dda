//! The `wharf` command: `serve` runs the server, `migrate` applies migrations and exits.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use wharf::config::{Config, Overrides};

#[derive(Parser)]
#[command(
    name = "wharf",
    version,
    about = "Self-hosted integration platform server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API, webhook ingest and background work in one process.
    Serve(Common),
    /// Apply database migrations and exit.
    Migrate(Common),
    /// Manage people.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a person (e.g. the first owner). With --password-stdin the password is read from
    /// standard input; without it, a one-time link to set one is printed.
    Create(UserCreate),
}

#[derive(Args)]
struct UserCreate {
    #[arg(long)]
    email: String,
    /// owner, admin, editor, viewer or event_viewer.
    #[arg(long)]
    role: String,
    /// Display name [default: the e-mail address's local part].
    #[arg(long)]
    name: Option<String>,
    /// The organisation by name (created if there is none); the only one when unset.
    #[arg(long)]
    organisation: Option<String>,
    /// Read the password from standard input (one line).
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct Common {
    /// Configuration file (TOML); see config/wharf.toml.
    #[arg(long, env = "WHARF_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080; env WHARF_LISTEN].
    #[arg(long)]
    listen: Option<String>,
    /// Data directory [default: ./data; env WHARF_DATA_DIR].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// `postgres://…` or `sqlite://…` [default: SQLite in the data directory; env WHARF_DATABASE_URL].
    #[arg(long)]
    database_url: Option<String>,
}

impl Common {
    fn load(self) -> Result<Config, String> {
        let overrides = Overrides {
            listen: self.listen,
            data_dir: self.data_dir,
            database_url: self.database_url,
        };
        Config::load(self.config.as_deref(), overrides).map_err(|e| e.to_string())
    }
}

/// glibc's allocator still serves the C libraries (SQLite's page cache; Rust's allocations go
/// to mimalloc, see `wharf::transform::heap`). It gives each thread that meets contention an
/// arena of its own, up to eight per core, and keeps what they once held. Two are plenty.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tunable; called before any thread is started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    wharf::transform::heap::return_memory_promptly();
    limit_malloc_arenas();
    let cli = Cli::parse();
    let (common, migrate_only, person) = match cli.command {
        Command::Serve(c) => (c, false, None),
        Command::Migrate(c) => (c, true, None),
        Command::User(UserCommand::Create(u)) => {
            let password = if u.password_stdin {
                let mut line = String::new();
                if let Err(e) = std::io::stdin().read_line(&mut line) {
                    eprintln!("wharf: cannot read the password from standard input: {e}");
                    return ExitCode::from(2);
                }
                Some(line.trim_end_matches(['\r', '\n']).to_string())
            } else {
                None
            };
            let person = wharf::people::cli::NewPerson {
                email: u.email,
                name: u.name,
                role: u.role,
                organisation: u.organisation,
                password,
            };
            (u.common, false, Some(person))
        }
    };
    let config = match common.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wharf: {e}");
            return ExitCode::from(2);
        }
    };
    wharf::init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wharf: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        if let Some(person) = person {
            let said = wharf::people::cli::create(config, person).await?;
            println!("{said}");
            Ok(())
        } else if migrate_only {
            std::fs::create_dir_all(&config.data_dir)?;
            let store = wharf::store::Store::connect(&config).await?;
            store.close().await;
            tracing::info!("migrations applied");
            Ok(())
        } else {
            wharf::serve(config).await
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wharf: {e:#}");
            ExitCode::FAILURE
        }
    }
}
