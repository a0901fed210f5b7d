//! `alpr-node`: the agency daemon and its operator/investigator commands.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    alpr_node::cli::main(alpr_node::cli::Cli::parse())
}
