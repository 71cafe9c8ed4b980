//! Reading plugin configuration (`list<key-value>`) with clear errors.

use alloc::format;
use alloc::string::String;
use core::str::FromStr;

use crate::KeyValue;

/// Typed access to a configuration list.
pub struct Config<'a>(pub &'a [KeyValue]);

impl<'a> Config<'a> {
    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        crate::find(self.0, key)
    }

    /// `key` parsed as `T`, or `None` when absent. A present but malformed value is an
    /// error naming the key, so a bad configuration fails loudly.
    pub fn parse<T: FromStr>(&self, key: &str) -> Result<Option<T>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(raw) => raw
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| format!("config `{key}`: cannot parse {raw:?}")),
        }
    }

    /// `key` parsed as `T`, or `default` when absent.
    pub fn parse_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        Ok(self.parse(key)?.unwrap_or(default))
    }

    /// `key` parsed as `T`; absent is an error.
    pub fn require<T: FromStr>(&self, key: &str) -> Result<T, String> {
        self.parse(key)?
            .ok_or_else(|| format!("config `{key}` is required"))
    }
}
