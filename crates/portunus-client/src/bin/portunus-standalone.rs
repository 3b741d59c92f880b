//! `portunus-standalone`: the Portunus forwarder run from a TOML file, without a control server
//! (see [`portunus_client::standalone`]).

fn main() -> std::process::ExitCode {
    portunus_client::standalone::main()
}
