//! `rule-harness`: see `rule-harness --help`. A thin command line over the `detect_host`
//! library, which is what others embed.

mod built_in;
mod cli;
mod native;

fn main() -> std::process::ExitCode {
    cli::main()
}
