//! HTTP-level tests of the payment spine against a running `payloom` process: every test
//! in `on_both_databases!` runs on SQLite and on PostgreSQL (skipped with a message when
//! PostgreSQL is unreachable, unless PAYLOOM_REQUIRE_POSTGRES=1); those in
//! `in_every_topology!` (the merchant API's hardening) also run on `payloom dev --split`,
//! every service its own process over mutual TLS, Kafka and Redis.

mod admin;
mod auth;
mod balancer;
mod capture_cancel;
mod crash;
mod deploy;
mod dev;
mod fuzz;
mod idempotency;
mod ingress;
mod kafka;
mod money;
mod mtls;
mod multiprocess;
mod openapi;
mod otlp;
mod payments;
mod plugin_fleet;
mod plugin_ops;
mod plugin_trust;
mod policy_fees;
mod receiver;

mod redis_backends;
mod refunds;
mod service_paths;
mod split;
mod support;
mod tenancy;
mod topology;
mod validation;
mod velocity;
mod webhook_limits;
mod webhooks;
