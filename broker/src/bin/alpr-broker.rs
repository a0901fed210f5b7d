//! `alpr-broker`: the query router and agreement registry.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    alpr_broker::cli::main(alpr_broker::cli::Cli::parse())
}
