//! What every authpulse binary does at its edge, in one place so the agent,
//! the coordinator and the CLI behave alike: JSON logging whose filter can
//! change while the process runs ([`logging`]), the one request format that
//! changes it over HTTP ([`log_level`]), and the signals that stop the
//! process ([`shutdown`]). No prober and no server lives here.
pub mod log_level;
pub mod logging;
pub mod shutdown;

pub use logging::{
    DEFAULT_FILTER, LogControl, LogFilterError, init_logging, log_control, parse_filter,
};
pub use shutdown::ShutdownSignal;
