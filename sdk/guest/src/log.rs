//! Logging into the host's logs (tagged with plugin id and version, capped per call).

pub use crate::imports::payloom::plugin::log::{Level, write};

/// Logs at info level: `payloom_sdk::info!("charged {}", amount)`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, &$crate::format!($($arg)*)) };
}

/// Logs at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warn, &$crate::format!($($arg)*)) };
}

/// Logs at error level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, &$crate::format!($($arg)*)) };
}
