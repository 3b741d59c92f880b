//! llama.cpp's `llama-server`, owned by the dashboard: how to launch it from the saved settings
//! ([`launch`]), how to talk to it over HTTP ([`upstream`]), and the supervisor that starts it,
//! watches its health, restarts it after a crash and stops only the process it started
//! ([`supervisor`]), and its router mode's model list, loading and unloading ([`router`]), and the generation
//! throughput read from its Prometheus metrics ([`scrape`]).

pub mod launch;
pub mod router;
pub mod scrape;
pub mod supervisor;
pub mod upstream;
