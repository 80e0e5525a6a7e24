//! `rule-harness`: see `rule-harness --help`. A thin command line over the
//! `rule_harness` library, which is what others embed.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
