//! Native tests of the MQTT layer: an in-memory broker on a virtual clock
//! (`broker`), client behaviour (`client`), session details (`session`)
//! and property tests of the codec and the state machines (`props`).

mod broker;
mod client;
mod coalesce;
mod lazy;
mod props;
mod session;
