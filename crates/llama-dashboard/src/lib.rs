//! `llama-dashboard`: manage GGUF models and llama.cpp's `llama-server`.
//!
//! Built so far: [`db`], the documented database (and adoption of the original's files), and
//! [`gguf`], our own bounded reader of GGUF model headers, which the model catalog is built on.
//! [`scan`] keeps the catalog in line with the models folder. Metrics, logs, the REST API and
//! the dashboard follow.

pub mod db;
pub mod gguf;
pub mod scan;
