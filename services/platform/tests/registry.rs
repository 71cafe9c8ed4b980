//! The registry refuses an inconsistent set of services before anything starts, and orders
//! the ones a process runs so each finds the services it calls already there.

use payloom_platform::registry::{Manifest, Routes, Service, Services, Wiring};

/// A service that only declares itself.
struct Declared(&'static Manifest);

#[async_trait::async_trait]
impl Service for Declared {
    fn manifest(&self) -> &'static Manifest {
        self.0
    }

    fn connect(&self, _: &mut Wiring<'_>) -> anyhow::Result<()> {
        Ok(())
    }

    async fn start(&self, _: &mut Wiring<'_>) -> anyhow::Result<Routes> {
        Ok(Routes::default())
    }
}

/// A registered service lives as long as the process: the test leaks its few.
fn service(
    name: &'static str,
    calls: &'static [&'static str],
    produces: &'static [&'static str],
    consumes: &'static [&'static str],
) -> &'static dyn Service {
    let manifest = Box::leak(Box::new(Manifest {
        name,
        port: 40000,
        config_section: None,
        migrations: &[],
        calls,
        produces,
        consumes,
        uses_plugins: false,
        public_paths: &[],
        bff: false,
    }));
    Box::leak(Box::new(Declared(manifest)))
}

fn refused(services: Vec<&'static dyn Service>) -> String {
    match Services::new(services) {
        Ok(_) => panic!("an inconsistent registry was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn callees_start_before_their_callers() {
    let services = Services::new(vec![
        service("gateway", &["orders", "ledger"], &["payments"], &[]),
        service("ledger", &[], &[], &["payments"]),
        service("orders", &["ledger"], &[], &[]),
    ])
    .unwrap();
    let order = |local: &[&str]| -> Vec<&str> {
        services
            .start_order(local)
            .unwrap()
            .iter()
            .map(|s| s.manifest().name)
            .collect()
    };
    assert_eq!(
        order(&["gateway", "orders", "ledger"]),
        ["ledger", "orders", "gateway"]
    );
    // Services elsewhere are not started here, and do not change the order of the rest.
    assert_eq!(order(&["gateway", "ledger"]), ["ledger", "gateway"]);
    assert_eq!(services.callers("ledger"), ["gateway", "orders"]);
    assert_eq!(services.producers(), [("payments", "gateway")]);
    assert!(services.manifest("nobody").is_err());
}

#[test]
fn an_inconsistent_registry_is_refused() {
    let twice = refused(vec![
        service("a", &[], &[], &[]),
        service("a", &[], &[], &[]),
    ]);
    assert!(twice.contains("registered twice"), "{twice}");
    let stranger = refused(vec![service("a", &["b"], &[], &[])]);
    assert!(
        stranger.contains("calls b, which is not registered"),
        "{stranger}"
    );
    let unheard = refused(vec![service("a", &[], &[], &["t"])]);
    assert!(
        unheard.contains("no registered service produces"),
        "{unheard}"
    );
    let two = refused(vec![
        service("a", &[], &["t"], &[]),
        service("b", &[], &["t"], &[]),
    ]);
    assert!(two.contains("produced by both"), "{two}");
    let circle = refused(vec![
        service("a", &["b"], &[], &[]),
        service("b", &["c"], &[], &[]),
        service("c", &["a"], &[], &[]),
    ]);
    assert!(circle.contains("in a circle"), "{circle}");
}
