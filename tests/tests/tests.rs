//! End-to-end tests: the real agent against a real RabbitMQ, with upstream
//! Trove code (trove==26.0.0, oslo.messaging) as the control plane.
//! Needs the broker and venv that `tests/run` sets up.

mod backup;
mod conductor;
mod conductor_race;
mod crash;
mod guest_log;
mod k2hdkc;
mod lifecycle;
mod ring_contract;
mod robustness;
mod rpc;
mod slave;
mod volume;
