//! What every authpulse binary does at its edge, in one place so the agent,
//! the coordinator and the CLI behave alike: logging (JSON or text) whose
//! filter can change while the process runs ([`logging`]), the one request format that
//! changes it over HTTP ([`log_level`]), and the signals that stop the
//! process ([`shutdown`]). No prober and no server lives here.
pub mod log_level;
pub mod logging;
pub mod shutdown;

pub use logging::{
    DEFAULT_FILTER, LOG_FORMATS, LogControl, LogFilterError, LogFormat, init_logging,
    init_logging_as, log_control, log_format_parser, parse_filter,
};
pub use shutdown::ShutdownSignal;
