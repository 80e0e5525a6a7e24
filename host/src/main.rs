//! `rule-harness`: see `rule-harness --help`, and the `cli` module of the library.

fn main() -> std::process::ExitCode {
    rule_harness::cli::main()
}
