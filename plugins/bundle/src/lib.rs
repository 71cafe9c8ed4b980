//! The reference plugins, built from `plugins/` by this crate's build script and
//! embedded, so the `payloom` binary carries them.

/// A component and its manifest.
#[derive(Debug, Clone, Copy)]
pub struct Bundled {
    /// File stem (`sandbox`), equal to the plugin id.
    pub name: &'static str,
    /// Component bytes.
    pub wasm: &'static [u8],
    /// Manifest text.
    pub manifest: &'static str,
}

macro_rules! bundled {
    ($name:literal) => {
        Bundled {
            name: $name,
            wasm: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".wasm")),
            manifest: include_str!(concat!(env!("OUT_DIR"), "/", $name, ".toml")),
        }
    };
}

/// `channels/sandbox`
pub const SANDBOX: Bundled = bundled!("sandbox");
/// `risk/amount-limit`
pub const AMOUNT_LIMIT: Bundled = bundled!("amount-limit");
/// `risk/velocity`
pub const VELOCITY: Bundled = bundled!("velocity");
/// `risk/blocklist`
pub const BLOCKLIST: Bundled = bundled!("blocklist");
/// `policies/standard`
pub const STANDARD: Bundled = bundled!("standard");

/// Every reference plugin.
pub const ALL: [Bundled; 5] = [SANDBOX, AMOUNT_LIMIT, VELOCITY, BLOCKLIST, STANDARD];

/// Test guests (not loaded by `payloom dev`).
pub mod testing {
    use super::Bundled;

    /// A `wasm32-wasip2` risk rule that probes files, sockets and the environment and
    /// reports what it got; it panics when configured with `panic = "yes"`.
    pub const SNOOP: Bundled = bundled!("snoop");
    /// A risk rule that misbehaves by config `mode` (loop, memory, output, panic, log, clock, spin).
    pub const HOSTILE: Bundled = bundled!("hostile");
    /// A channel whose `create-payment` performs one host call and reports it.
    pub const FETCHER: Bundled = bundled!("fetcher");
}

impl Bundled {
    /// The same component relabelled as another version, for tests of version handling:
    /// every occurrence of `from` in the bytes and the manifest becomes `to` (same length,
    /// so the component stays valid and its `describe` agrees with the manifest).
    pub fn relabelled(&self, from: &str, to: &str) -> (Vec<u8>, String) {
        (
            self.bytes_replaced(from, to),
            self.manifest.replace(from, to),
        )
    }

    /// The component with every occurrence of `from` in its bytes replaced by `to` (same
    /// length). Where a version string also names WIT packages, replace a longer,
    /// unique neighbourhood of it (`sandbox0.1.0`).
    pub fn bytes_replaced(&self, from: &str, to: &str) -> Vec<u8> {
        assert_eq!(from.len(), to.len(), "a relabel keeps the length");
        let mut wasm = self.wasm.to_vec();
        let mut hits = 0;
        for i in 0..wasm.len() - from.len() {
            if &wasm[i..i + from.len()] == from.as_bytes() {
                wasm[i..i + from.len()].copy_from_slice(to.as_bytes());
                hits += 1;
            }
        }
        assert!(hits > 0, "{from} not found in {}", self.name);
        wasm
    }

    /// Writes `<name>.wasm` and `<name>.toml` into `dir`.
    pub fn write_to(&self, dir: &std::path::Path) -> std::io::Result<()> {
        std::fs::write(dir.join(format!("{}.wasm", self.name)), self.wasm)?;
        std::fs::write(dir.join(format!("{}.toml", self.name)), self.manifest)
    }
}
