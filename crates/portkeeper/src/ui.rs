//! Placeholder until the terminal UI lands (see crates/portkeeper/src/ui.rs in a later commit).

use crate::cli::UiArgs;
use crate::commands::Context;
use crate::error::{Error, Result};

/// Runs the terminal UI.
pub fn run(_ctx: &Context, _args: &UiArgs) -> Result<u8> {
    Err(Error::Other("the terminal UI is not built yet".into()))
}
