//! RPC: clients that call and cast, servers that dispatch to endpoints.

pub(crate) mod client;
pub(crate) mod dedup;
pub(crate) mod dispatcher;
pub(crate) mod reply;
pub(crate) mod server;
