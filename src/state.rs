//! Shared state: collections of JSON documents replicated to every device of
//! the venue (the second pillar next to the command queue). Being built:
//! `docs/state.md` will have the design.

pub mod audit;
pub mod codec;
pub mod json;
pub mod model;
pub(crate) mod mutation;
pub mod wire;
