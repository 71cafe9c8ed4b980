//! `payloom`: one binary, many roles. Today it carries the plugin host and tooling:
//!
//! ```text
//! payloom dev                                        the plugin host on embedded defaults
//! payloom plugin new <channel|risk|policy> <name>   scaffold a plugin crate
//! payloom plugin build [dir]                         build it into a component
//! payloom plugin check <component.wasm>              validate a component
//! payloom plugin run <component.wasm> --fixture f    run fixture calls, report usage
//! payloom plugin conformance <component.wasm> --scenarios s
//! payloom plugin bench <component.wasm>              p50/p99 of fresh-instance calls
//! payloom plugin keygen | sign                       ed25519 signing of artifacts
//! ```

mod dev;
mod plugin;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "payloom", version, about = "Payloom payment platform")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform on embedded defaults (today: the plugin host with the
    /// reference plugins, hot reload, health and metrics).
    Dev(dev::DevArgs),
    /// Plugin tooling: scaffold, build, check, run, conformance, bench, sign.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("PAYLOOM_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dev(args) => dev::run(args).map(|()| ExitCode::SUCCESS),
        Command::Plugin(command) => plugin::run(command),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
