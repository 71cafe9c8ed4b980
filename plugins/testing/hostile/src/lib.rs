//! A misbehaving risk rule for host tests, built like every SDK plugin (no WASI).
//! Config `mode` picks the behaviour; every answer carries `version=<VERSION>` so tests
//! can tell versions apart (they patch the version bytes to make a second version).

use payloom_sdk::config::Config;
use payloom_sdk::risk::*;
use payloom_sdk::{KeyValue, String, Vec, clock, format, vec};

/// Patched by tests to produce "9.2.0", "9.3.0". Patched to "9.9.9", `describe` traps:
/// a build that fails its smoke test.
const VERSION: &str = "9.1.0";

struct Hostile;

impl Guest for Hostile {
    fn describe() -> Descriptor {
        // Read through black_box, or the compiler folds the comparison with the constant.
        if core::hint::black_box(VERSION) == "9.9.9" {
            panic!("this build traps in describe");
        }
        Descriptor {
            id: "hostile".into(),
            version: VERSION.into(),
            description: "misbehaves".into(),
            config_keys: vec!["mode".into()],
        }
    }

    fn evaluate(_ctx: Context, config: Vec<KeyValue>) -> Result<Verdict, String> {
        let config = Config(&config);
        let mut reasons = vec![format!("version={VERSION}")];
        match config.get("mode").unwrap_or("") {
            "loop" => loop {
                core::hint::black_box(&reasons);
            },
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    core::hint::black_box(&hoard);
                }
            }
            "output" => reasons.extend((0..2_000).map(|i| format!("{i:0>1000}"))),
            "panic" => panic!("hostile was asked to panic"),
            "log" => (0..1_000).for_each(|i| payloom_sdk::info!("line {i} {:0>100}", 0)),
            "clock" => reasons.push(format!("now_ms={}", clock::now_ms())),
            "spin" => {
                let n: u64 = config.parse_or("iterations", 100_000)?;
                let mut x = 0u64;
                for i in 0..n {
                    x = core::hint::black_box(x.wrapping_add(i));
                }
            }
            "" => {}
            other => return Err(format!("unknown mode {other:?}")),
        }
        Ok(Verdict {
            action: Action::Allow,
            score: 0,
            reasons,
        })
    }
}

payloom_sdk::export_risk_rule!(Hostile);
