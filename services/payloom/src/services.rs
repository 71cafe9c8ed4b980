//! The services this binary runs: one line each. `dev`, `serve` and `certs init` take
//! everything from here; a service's crate says the rest (see `payloom_platform::registry`).

use payloom_platform::registry::{Service, Services};

const REGISTERED: [&dyn Service; 11] = [
    &payloom_admin_bff::service::AdminService,
    &payloom_payment_gateway::service::GatewayService,
    &payloom_order::service::OrderService,
    &payloom_channel_adapter::service::ChannelService,
    &payloom_risk::service::RiskService,
    &payloom_merchant_auth::service::MerchantAuthService,
    &payloom_merchant_policy::service::PolicyService,
    &payloom_merchant_quota::service::QuotaService,
    &payloom_accounting::service::AccountingService,
    &payloom_notification::service::NotificationService,
    &payloom_plugin_registry::service::PluginRegistryService,
];

/// The registry, checked (names, calls and topics resolve; no circular calls).
pub fn registered() -> Services {
    Services::new(REGISTERED.to_vec()).expect("the registered services are consistent")
}

/// A service name on the command line.
pub fn parse_name(name: &str) -> Result<&'static str, String> {
    registered()
        .manifest(name)
        .map(|m| m.name)
        .map_err(|e| e.to_string())
}
