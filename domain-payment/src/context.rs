//! The payment context as it describes itself to the app: its tables, its
//! routes, its subscribers, the work it owes payment providers, and the
//! `OrderLookup` port it needs.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use diesel_migrations::embed_migrations;
use secrecy::SecretString;
use shared_kernel::context::Port;
use shared_kernel::context::{Context, Job, Routes, Started, Subscriber, Wiring};
use shared_kernel::messaging::outbox::Outbox;
use shared_kernel::model::ports::{OrderLookup, PaymentGateway};
use shared_kernel::storage::db::{Db, MigrationSet};

use crate::model::PaymentMethod;
use crate::providers::alipay::Alipay;
use crate::providers::wechat_pay::WechatPay;
use crate::service::{PROVIDER_WORK_BATCH, Reconciliation};
use crate::signature::ShopSignature;
use crate::{
    AlipayGateway, CheckoutLinks, Gateways, PaymentService, Refunds, SandboxCheckout,
    SandboxGateway, SandboxTrades, TradeClosing, WechatPayGateway,
};

/// The payment context: payments, gateways and their notifications.
pub const CONTEXT: Context = Context {
    name: "payment",
    migrations: MigrationSet {
        sqlite: &embed_migrations!("../migrations/sqlite/payment"),
        postgres: &embed_migrations!("../migrations/postgres/payment"),
        mysql: &embed_migrations!("../migrations/mysql/payment"),
    },
    routes: Routes {
        api: crate::http::configure_api,
        original_spec: crate::http::configure_original_spec,
        internal: None,
    },
    tag: (
        "payments",
        "Payments: initiation (payment URL and QR code), signed gateway notifications",
    ),
    subscribers: &[
        Subscriber {
            name: Refunds::NAME,
            events: Refunds::EVENTS,
        },
        Subscriber {
            name: TradeClosing::NAME,
            events: TradeClosing::EVENTS,
        },
    ],
    offers: &[],
    needs: &[Port::OrderLookup],
    asks: &[],
    start,
};

/// What the payment context is started with, beside the database and the outbox.
#[derive(Clone)]
pub struct PaymentConfig {
    /// Signs and verifies `Shop-Signature` notifications (`SHOP__PAYMENT__WEBHOOK_SECRET`).
    pub webhook_secret: SecretString,
    /// Serve the sandbox gateway and its checkout page (`SHOP__PAYMENT__SANDBOX`).
    pub sandbox: bool,
    /// Where customers reach this server (payment URLs, provider notify URLs).
    pub public_url: String,
    /// Where this server reaches itself (the sandbox's notifications).
    pub internal_url: String,
    /// Alipay's protocol, when Alipay is configured.
    pub alipay: Option<Arc<Alipay>>,
    /// WeChat Pay's protocol, when WeChat Pay is configured.
    pub wechat_pay: Option<Arc<WechatPay>>,
    /// When unsettled payments are asked about at their provider.
    pub reconciliation: Reconciliation,
    /// How often the work owed to providers is looked for (`SHOP__WORKER__POLL_MS`).
    pub provider_work_every: Duration,
}

fn start(wiring: &mut Wiring) -> anyhow::Result<Started> {
    let db: Db = wiring.get()?;
    let outbox: Outbox = wiring.get()?;
    let config: PaymentConfig = wiring.get()?;
    let orders = wiring.port::<dyn OrderLookup>()?;
    let links = CheckoutLinks::new(&config.webhook_secret);
    // The sandbox's own record of its trades, which its page and its gateway share.
    let sandbox_trades = SandboxTrades::default();
    let Providers {
        gateways,
        alipay,
        wechat_pay,
    } = providers(&config, &links, &sandbox_trades)?;
    let payments = PaymentService::new(
        db,
        outbox,
        orders,
        gateways,
        ShopSignature::new(config.webhook_secret.clone()),
        config.reconciliation,
    );
    tracing::info!(gateways = ?payments.gateways(), "payment methods and the gateways that serve them");
    let sandbox = config
        .sandbox
        .then(|| SandboxCheckout::new(&config.internal_url, links, sandbox_trades));
    let wechat_pay = wechat_pay.map(web::Data::from);
    let served = payments.clone();
    let settling = payments.clone();
    let exposed = payments.clone();
    Ok(Started::default()
        .serve(move |cfg| {
            cfg.app_data(web::Data::new(served.clone()));
            if let Some(wechat_pay) = &wechat_pay {
                cfg.app_data(wechat_pay.clone());
            }
            if let Some(alipay) = &alipay {
                cfg.app_data(web::Data::new(alipay.clone()));
            }
            if let Some(sandbox) = &sandbox {
                cfg.app_data(web::Data::new(sandbox.clone()));
                crate::sandbox::configure_checkout(cfg);
            }
        })
        .handle(Refunds::NAME, Arc::new(Refunds))
        .handle(TradeClosing::NAME, Arc::new(TradeClosing))
        .expose(exposed)
        .job(Job::every(
            "provider work",
            config.provider_work_every,
            move || {
                let payments = settling.clone();
                async move {
                    let settled = payments.settle_with_providers().await?;
                    Ok::<_, crate::PaymentError>(Job::progress(
                        settled,
                        PROVIDER_WORK_BATCH as usize,
                    ))
                }
            },
        ))
        .job(Job::every(
            "notification retention",
            Duration::from_secs(60),
            move || {
                let payments = payments.clone();
                async move {
                    payments.prune_notifications().await?;
                    Ok::<_, crate::PaymentError>(shared_kernel::context::Progress::Done)
                }
            },
        )))
}

/// The gateways of the configured providers, and the adapters their notify
/// routes verify with.
struct Providers {
    gateways: Gateways,
    alipay: Option<AlipayGateway>,
    wechat_pay: Option<Arc<WechatPayGateway>>,
}

/// The real providers configured, then the sandbox (when on) for every
/// method left: the first gateway given for a method serves it.
fn providers(
    config: &PaymentConfig,
    links: &CheckoutLinks,
    sandbox_trades: &SandboxTrades,
) -> anyhow::Result<Providers> {
    let mut gateways = Gateways::default();
    let alipay = match &config.alipay {
        Some(protocol) => {
            let notify_url = format!("{}/api/v1/payments/notify/alipay", config.public_url);
            let gateway = AlipayGateway::new(protocol.clone(), notify_url).map_err(|e| {
                anyhow::anyhow!("Alipay (SHOP__PAYMENT__PUBLIC_URL must be https): {e}")
            })?;
            gateways = gateways.serve(PaymentMethod::Alipay, Arc::new(gateway.clone()));
            Some(gateway)
        }
        None => None,
    };
    let wechat_pay = config
        .wechat_pay
        .as_ref()
        .map(|protocol| Arc::new(WechatPayGateway::new(protocol.clone(), &config.public_url)));
    if let Some(wechat_pay) = &wechat_pay {
        gateways = gateways.serve(PaymentMethod::WechatPay, wechat_pay.clone());
    }
    if config.sandbox {
        let sandbox: Arc<dyn PaymentGateway> = Arc::new(SandboxGateway::new(
            &config.public_url,
            links.clone(),
            sandbox_trades.clone(),
        ));
        for method in [PaymentMethod::Alipay, PaymentMethod::WechatPay] {
            gateways = gateways.serve(method, sandbox.clone());
        }
        tracing::warn!(
            checkout = %format!("{}/sandbox/checkout/", config.public_url),
            "the sandbox payment gateway is on: anyone can pay for free. Set SHOP__PAYMENT__SANDBOX=false in production"
        );
    }
    Ok(Providers {
        gateways,
        alipay,
        wechat_pay,
    })
}
