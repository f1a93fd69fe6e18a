//! End-to-end tests: one binary, each test on its own app and database.

mod alipay;
mod architecture;
mod audit;
mod contexts;
mod contract;
mod crash;
mod fuzz;
mod hardening;
mod harness;
mod identity;
mod instances;
mod observability;
mod operations;
mod orders;
mod payments;
mod product_cache;
mod products;
mod rabbitmq;
mod remote_ports;
mod reservations;
mod schema;
mod split;
mod startup;
mod subscriptions;
mod wechat_pay;
mod write_path;
