//! Test-side stand-ins for the other end of the protocol. They grow into the test orchestrator (§8 of the protocol
//! reference), which runs the real orchestrator-side rules against the gateway.

pub(crate) mod recipient;
