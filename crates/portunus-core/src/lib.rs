//! What the Portunus control plane and its edge clients agree on.
//!
//! `portunus-server` stores and validates forwarding rules; `portunus-client` receives them and
//! forwards traffic. Both use these types, so a rule the server accepted is a rule the client can
//! run: the checks (ports 1–65535, a listen range of at most 1,024 ports, 1 to 8 targets, known
//! protocols) live here, once. So do the control protocol they speak ([`wire`]) and the
//! certificate pinning the client uses to trust the server ([`pin`]).

pub mod forward;
pub mod pin;
pub mod rule;
pub mod wire;

pub use forward::{Forwarder, ForwarderConfig, OwnerUsage, RuleStats};
pub use pin::{PinError, PinnedVerifier, fingerprint_of_der, pinned_client_config};
pub use rule::{
    MAX_RANGE, MAX_TARGETS, PortRange, Protocol, ProxyProtocol, RuleError, Target, check_targets,
};
pub use wire::{
    Caps, ClientMessage, FrameReader, MAX_FRAME, PROTOCOL_VERSION, RuleSpec, RuleState, RuleStatus,
    ServerMessage, read_frame, write_frame,
};
