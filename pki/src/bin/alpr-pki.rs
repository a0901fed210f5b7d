//! `alpr-pki`: issue and inspect the federation's certificates.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    match alpr_pki::cli::run(alpr_pki::cli::Cli::parse()) {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("alpr-pki: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
