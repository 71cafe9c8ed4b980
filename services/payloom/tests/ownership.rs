//! Each service owns its tables: no service's SQL (its migrations, or the queries in its
//! source) names a table another service's migrations create. The event tables that
//! `payloom_platform::events` installs beside every service are the one shared set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The services with tables, by the folder that holds their crate.
const SERVICES: [&str; 11] = [
    "services/accounting",
    "services/channel-adapter",
    "services/merchant-auth",
    "services/merchant-policy",
    "services/merchant-quota",
    "services/notification",
    "services/order",
    "services/payment-gateway",
    "services/platform",
    "services/risk",
    "bff/admin",
];

/// Words after which SQL names a table.
const TABLE_POSITIONS: [&str; 5] = ["from", "join", "into", "update", "table"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every file below `dir` ending in `ext`.
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path, ext));
        } else if path.extension().is_some_and(|e| e == ext) {
            found.push(path);
        }
    }
    found
}

/// The lowercase words of `text`, with Rust line comments left out.
fn words(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .flat_map(|line| line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter(|word| !word.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The tables each service's migrations create, by table.
fn owners() -> BTreeMap<String, &'static str> {
    let mut owners = BTreeMap::new();
    for service in SERVICES {
        for file in files(&workspace().join(service).join("migrations"), "sql") {
            let words = words(&std::fs::read_to_string(&file).unwrap());
            for at in 0..words.len().saturating_sub(2) {
                if words[at] == "create" && words[at + 1] == "table" {
                    let skip = if words[at + 2] == "if" { 5 } else { 2 };
                    owners.insert(words[at + skip].clone(), service);
                }
            }
        }
    }
    owners
}

#[test]
fn no_service_names_another_services_table() {
    let owners = owners();
    assert!(owners.get("payments") == Some(&"services/payment-gateway"));
    assert!(owners.get("payloom_outbox") == Some(&"services/platform"));
    let mut trespasses = Vec::new();
    for service in SERVICES {
        let root = workspace().join(service);
        let mut sources = files(&root.join("src"), "rs");
        sources.extend(files(&root.join("migrations"), "sql"));
        for file in sources {
            let words = words(&std::fs::read_to_string(&file).unwrap());
            for pair in words.windows(2) {
                let Some(owner) = owners.get(&pair[1]) else {
                    continue;
                };
                let shared = *owner == "services/platform";
                if TABLE_POSITIONS.contains(&pair[0].as_str()) && *owner != service && !shared {
                    trespasses.push(format!("{} names {} of {owner}", file.display(), pair[1]));
                }
            }
        }
    }
    assert!(trespasses.is_empty(), "{trespasses:#?}");
}

#[test]
fn the_scan_sees_a_trespass() {
    let owners = owners();
    let words = words("let row = sqlx::query(\"SELECT status FROM orders WHERE id = $1\");");
    let named: Vec<_> = words
        .windows(2)
        .filter(|pair| TABLE_POSITIONS.contains(&pair[0].as_str()))
        .filter_map(|pair| owners.get(&pair[1]))
        .collect();
    assert_eq!(named, [&"services/order"]);
}
