//! The shape of a webhook URL, as the API document states it: `http://` or `https://`, a
//! host (a domain name, an IPv4 address, or an IPv6 address in brackets), an optional
//! port, then visible ASCII. It is narrower than what URL parsers take (no credentials,
//! no spaces, no names that parse as numbers), so that the document's pattern and
//! [`check`] accept exactly the same strings, and every one of them parses as a URL.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::json;
use utoipa::openapi::schema::Schema;

/// Longest URL accepted, in characters.
pub const LEN_MAX: usize = 2_048;

// The grammar's pieces, as macros so that `concat!` can join them into one pattern.
macro_rules! dec_octet {
    () => {
        "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
    };
}
macro_rules! ipv4 {
    () => {
        concat!(
            dec_octet!(),
            r"\.",
            dec_octet!(),
            r"\.",
            dec_octet!(),
            r"\.",
            dec_octet!()
        )
    };
}
macro_rules! h16 {
    () => {
        "[0-9A-Fa-f]{1,4}"
    };
}
macro_rules! ls32 {
    () => {
        concat!("(", h16!(), ":", h16!(), "|", ipv4!(), ")")
    };
}
/// RFC 3986's IPv6address, which `Ipv6Addr`'s parser follows.
macro_rules! ipv6 {
    () => {
        concat!(
            "((",
            h16!(),
            ":){6}",
            ls32!(),
            "|::(",
            h16!(),
            ":){5}",
            ls32!(),
            "|(",
            h16!(),
            ")?::(",
            h16!(),
            ":){4}",
            ls32!(),
            "|((",
            h16!(),
            ":){0,1}",
            h16!(),
            ")?::(",
            h16!(),
            ":){3}",
            ls32!(),
            "|((",
            h16!(),
            ":){0,2}",
            h16!(),
            ")?::(",
            h16!(),
            ":){2}",
            ls32!(),
            "|((",
            h16!(),
            ":){0,3}",
            h16!(),
            ")?::",
            h16!(),
            ":",
            ls32!(),
            "|((",
            h16!(),
            ":){0,4}",
            h16!(),
            ")?::",
            ls32!(),
            "|((",
            h16!(),
            ":){0,5}",
            h16!(),
            ")?::",
            h16!(),
            "|((",
            h16!(),
            ":){0,6}",
            h16!(),
            ")?::)"
        )
    };
}
/// Dot-separated labels of letters, digits and single inner hyphens; the last starts
/// with a letter, since URL parsers read a name ending in a number as an IPv4 address.
macro_rules! name {
    () => {
        r"([A-Za-z0-9]+(-[A-Za-z0-9]+)*\.)*[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*"
    };
}
/// 0 to 65535; leading zeros only within four digits.
macro_rules! port {
    () => {
        "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
    };
}

/// The pattern of the document (ECMA-262 syntax, read alike by Python's and Rust's
/// regex engines).
pub const PATTERN: &str = concat!(
    "^https?://(",
    name!(),
    "|",
    ipv4!(),
    r"|\[",
    ipv6!(),
    r"\])(:",
    port!(),
    ")?([/?#][!-~]*)?$"
);

const BAD_SCHEME: &str = "url must start with http:// or https://";
const BAD_HOST: &str =
    "url's host must be a domain name, an IPv4 address, or an IPv6 address in brackets";
const BAD_PORT: &str = "url's port must be 0 to 65535";
const BAD_REST: &str =
    "url must be visible ASCII after its host: no spaces (percent-encode anything else)";

/// The schema of the `url` field.
pub fn schema() -> Schema {
    let literal = json!({
        "type": "string",
        "description": "Where deliveries go: `http://` or `https://`, a domain name, an IPv4 \
            address or an IPv6 address in brackets, an optional port, then visible ASCII. \
            Loopback and private addresses are refused (422) unless the operator allows them.",
        "maxLength": LEN_MAX,
        "pattern": PATTERN,
    });
    serde_json::from_value(literal).expect("the url schema literal is valid")
}

/// Whether `url` has the documented shape; the reason when it does not.
pub fn check(url: &str) -> Result<(), &'static str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or(BAD_SCHEME)?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if !tail.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(BAD_REST);
    }
    let (host, port) = split_port(authority)?;
    if !(is_name(host) || host.parse::<Ipv4Addr>().is_ok() || is_bracketed_ipv6(host)) {
        return Err(BAD_HOST);
    }
    match port {
        Some(port) if !is_port(port) => Err(BAD_PORT),
        _ => Ok(()),
    }
}

fn split_port(authority: &str) -> Result<(&str, Option<&str>), &'static str> {
    // A bracketed IPv6 address holds colons of its own.
    let host_end = match authority.starts_with('[') {
        true => authority
            .find(']')
            .map_or(authority.len(), |close| close + 1),
        false => authority.find(':').unwrap_or(authority.len()),
    };
    let (host, after) = authority.split_at(host_end);
    match after {
        "" => Ok((host, None)),
        _ => after
            .strip_prefix(':')
            .map(|port| (host, Some(port)))
            .ok_or(BAD_HOST),
    }
}

fn is_name(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    let is_label = |label: &str| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && !label.contains("--")
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let last_starts_with_letter = labels
        .last()
        .is_some_and(|last| last.starts_with(|c: char| c.is_ascii_alphabetic()));
    labels.iter().all(|label| is_label(label)) && last_starts_with_letter
}

fn is_bracketed_ipv6(host: &str) -> bool {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .is_some_and(|inner| inner.parse::<Ipv6Addr>().is_ok())
}

fn is_port(port: &str) -> bool {
    let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    match port.len() {
        1..=4 => digits,
        5 => digits && !port.starts_with('0') && port.parse::<u32>().is_ok_and(|p| p <= 65_535),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_shape_is_what_passes() {
        for good in [
            "http://a",
            "https://example.com/hook?x=1#frag",
            "http://127.0.0.1:9/hook",
            "http://my-host.example:65535",
            "http://a:0080/",
            "http://0.0.0.0:9",
            "http://[::1]:8080/x",
            "http://[::ffff:169.254.169.254]/",
            "http://[1:2:3:4:5:6:1.2.3.4]",
            "http://[1:2:3:4:5:6:7::]",
            "https://x1.y/%zz\\|{}",
        ] {
            assert_eq!(check(good), Ok(()), "{good}");
            let parsed = url::Url::parse(good);
            assert!(parsed.is_ok_and(|u| u.host().is_some()), "{good} parses");
        }
        for bad in [
            "",
            "ftp://example.com",
            "HTTP://example.com",
            "http://",
            "http://a.1",
            "http://1.2.3",
            "http://01.2.3.4",
            "http://a--b.c",
            "http://-a.b",
            "http://a..b",
            "http://user:pw@example.com",
            "http://a:65536",
            "http://a:00080",
            "http://a:",
            "http://[::1",
            "http://[1::2::3]",
            "http://[fe80::1%25eth0]",
            "http://a/ b",
            "http://a/é",
            "http://a\\b",
            " http://a",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_pattern_is_one_piece_of_the_schema() {
        let schema = serde_json::to_value(schema()).unwrap();
        assert_eq!(schema["pattern"], PATTERN);
        assert_eq!(schema["maxLength"], LEN_MAX);
        assert!(PATTERN.starts_with("^https?://(") && PATTERN.ends_with("$"));
    }
}
