//! `rule-harness`: see `rule-harness --help`. A thin command line over the `detect_host`
//! library, which is what others embed.

mod built_in;
mod cli;
mod native;

fn main() -> std::process::ExitCode {
    // A damaged state file is reported as an error that says what to do; the storage
    // engine's panic under it is not printed as well.
    detect_host::state::quiet_engine_panics();
    cli::main()
}
