//! `llama-dashboard`: manage GGUF models and llama.cpp's `llama-server`.
//!
//! [`db`] is the documented database (and adoption of the original's files); [`gguf`] is our
//! own bounded reader of GGUF model headers, which the catalog is built on; [`scan`] keeps the
//! catalog in line with the models folder. [`sampler`] measures the machine, [`logging`] writes
//! our events to the `logs` table, [`events`] carries live changes to every open dashboard, and
//! [`api`] is the REST API that [`serve`] runs. [`cli`] and [`commands`] are the command line.

pub mod api;
pub mod app;
pub mod cli;
pub mod commands;
pub mod db;
pub mod error;
pub mod events;
pub mod gguf;
pub mod http;
pub mod idle;
pub mod llama;
pub mod logging;
pub mod proxy;
pub mod sampler;
pub mod scan;
pub mod serve;
pub mod web;
