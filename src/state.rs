//! Shared state: collections of JSON documents replicated to every device of
//! the venue (the second pillar next to the command queue). Being built:
//! `docs/state.md` will have the design.

pub mod json;
