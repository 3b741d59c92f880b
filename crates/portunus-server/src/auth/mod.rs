//! Who is calling: local password accounts, API tokens, browser sessions, the first-run setup
//! token and login throttling.
//!
//! A request is authenticated either by `Authorization: Bearer <token>` (an API token, stored as
//! a blake3 hash and found by one index probe) or by the `portunus_session` cookie, in which case
//! every state-changing request must also carry the session's CSRF token in `X-CSRF-Token`.

pub mod password;
pub mod principal;
pub mod sessions;
pub mod setup;
pub mod throttle;
pub mod tokens;

pub use principal::{Principal, Role, Via};
