//! `portunus-client`: the edge node of a Portunus fleet (see [`portunus_client::cli`]).

fn main() -> std::process::ExitCode {
    portunus_client::cli::main()
}
