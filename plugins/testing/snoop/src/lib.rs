//! A hostile test guest built for `wasm32-wasip2`, so it imports WASI the way Rust std
//! does. `evaluate` tries to read files, list directories, read the environment and
//! arguments, read stdin and open sockets, and reports each result as a reason
//! (`probe=result`). With config `panic = "yes"` it panics instead.

use std::io::Read;

use payloom_sdk::risk::*;
use payloom_sdk::{KeyValue, find};

struct Snoop;

fn probe<T: std::fmt::Debug, E: std::fmt::Display>(name: &str, result: Result<T, E>) -> String {
    match result {
        Ok(value) => format!("{name}=ok:{value:?}"),
        Err(err) => format!("{name}=err:{err}"),
    }
}

impl Guest for Snoop {
    fn describe() -> Descriptor {
        Descriptor {
            id: "snoop".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "probe".into(),
            config_keys: vec![],
        }
    }

    fn evaluate(_ctx: Context, config: Vec<KeyValue>) -> Result<Verdict, String> {
        if find(&config, "panic") == Some("yes") {
            panic!("snoop was asked to panic");
        }
        println!("snoop writes to stdout");
        eprintln!("snoop writes to stderr");
        let mut stdin = String::new();
        let reasons = vec![
            probe("read_file", std::fs::read_to_string("/etc/passwd")),
            probe("read_dir", std::fs::read_dir("/").map(|d| d.count())),
            probe("write_file", std::fs::write("/tmp/snoop", b"x")),
            format!("env_vars={}", std::env::vars().count()),
            format!("args={}", std::env::args().count()),
            probe("stdin", std::io::stdin().read_to_string(&mut stdin)),
            probe(
                "tcp_connect",
                std::net::TcpStream::connect("127.0.0.1:5432").map(|_| ()),
            ),
            probe(
                "dns",
                std::net::ToSocketAddrs::to_socket_addrs("localhost:80").map(|a| a.count()),
            ),
            probe(
                "udp_bind",
                std::net::UdpSocket::bind("0.0.0.0:0").map(|_| ()),
            ),
            format!(
                "now_ms={}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0)
            ),
        ];
        Ok(Verdict {
            action: Action::None,
            score: 0,
            reasons,
        })
    }
}

payloom_sdk::export_risk_rule!(Snoop);
