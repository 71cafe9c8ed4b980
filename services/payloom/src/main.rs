//! `payloom`: one binary, many roles.
//!
//! ```text
//! payloom dev                                        every service in one process, embedded defaults
//! payloom serve <service>...                         chosen services against PostgreSQL, mTLS between
//! payloom certs init                                 a CA and a certificate per service for `serve`
//! payloom demo pay                                   a signed sample payment against `dev`
//! payloom bench payments                             load generator with a database baseline
//! payloom plugin new <channel|risk|policy> <name>   scaffold a plugin crate
//! payloom plugin build [dir]                         build it into a component
//! payloom plugin check <component.wasm>              validate a component
//! payloom plugin run <component.wasm> --fixture f    run fixture calls, report usage
//! payloom plugin conformance <component.wasm> --scenarios s
//! payloom plugin bench <component.wasm>              p50/p99 of fresh-instance calls
//! payloom plugin keygen | sign                       ed25519 signing of artifacts
//! payloom deploy generate [--check]                  compose, Prometheus and Kong files from the registry
//! payloom probe <url>                                a container's health check
//! ```

mod app;
mod bench;
mod certs;
mod demo;
mod deploy;
mod dev;
mod plugin;
mod probe;
mod serve;
mod services;
mod split;

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
    /// Run every service in this process on embedded defaults (SQLite, in-memory caches,
    /// the reference plugins), with a demo merchant and admin user.
    Dev(dev::DevArgs),
    /// Run the chosen services against PostgreSQL, reaching the others over HTTP.
    Serve(serve::ServeArgs),
    /// Certificates for the mutual TLS between the processes of `serve`.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Try the running platform.
    #[command(subcommand)]
    Demo(demo::DemoCommand),
    /// Load generators.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Plugin tooling: scaffold, build, check, run, conformance, bench, sign.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Deployment files generated from the service registry (compose, Prometheus, Kong).
    #[command(subcommand)]
    Deploy(deploy::DeployCommand),
    /// Exit 0 when a URL answers 2xx: the containers' health check.
    Probe(probe::ProbeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The services (`dev`, `serve`) set up logs and traces once their config is read;
    // the other commands log plain text, warnings and up.
    if !matches!(cli.command, Command::Serve(_) | Command::Dev(_)) {
        payloom_platform::telemetry::init_logs(false, "warn");
    }
    let result = match cli.command {
        Command::Dev(args) => dev::run(args).map(|()| ExitCode::SUCCESS),
        Command::Serve(args) => serve::run(args).map(|()| ExitCode::SUCCESS),
        Command::Certs(command) => certs::run(command).map(|()| ExitCode::SUCCESS),
        Command::Demo(command) => demo::run(command).map(|()| ExitCode::SUCCESS),
        Command::Bench(command) => bench::run(command).map(|()| ExitCode::SUCCESS),
        Command::Plugin(command) => plugin::run(command),
        Command::Deploy(command) => deploy::run(command).map(|()| ExitCode::SUCCESS),
        Command::Probe(args) => probe::run(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
