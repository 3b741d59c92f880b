//! Fuzzes the GGUF header reader: any input must yield `Ok` or `Err`, never a panic, a hang or
//! a large allocation. Run with `cargo fuzz run gguf_header` from `crates/llama-dashboard`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = llama_dashboard::gguf::parse(data);
});
