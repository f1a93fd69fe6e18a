//! shop's load driver. One run prints, per backend (SQLite, PostgreSQL with
//! `--postgres`, MySQL/MariaDB with `--mysql`), a side-by-side table of
//! figures measured back to back on this machine, each with its ratios:
//!
//! - the engine ceilings: the statements one createOrder runs, with no HTTP
//!   (SQLite: one connection in one thread, (a) a commit per order and (b)
//!   64 orders a commit, as the seam batches; PostgreSQL: pgbench running
//!   them as a custom script, 32 clients, over 10,000 products; MySQL: the
//!   same from 32 client threads over diesel, see ceiling.rs for why not
//!   mariadb-slap); see ceiling.rs, where the statements are kept;
//! - the original article's stack (Flask under gunicorn, started with
//!   ../shared/peers/run_peer.sh, stopped with stop_peer.sh) on the same
//!   database engine, loaded by the same generator with the same requests
//!   (`GET /getProductInfo?productId=`, `POST /createOrder`); it has no
//!   MySQL mode, so on MySQL shop is compared with the engine ceiling only;
//! - shop on those original-spec aliases and on its REST routes, next to
//!   `/health/live` (the framework's ceiling); statements and commits per
//!   createOrder and per purchase from its `/metrics`; the purchase flow;
//!   the flash sale; expiry of thousands of orders at once; start-up and memory;
//! - on PostgreSQL, the purchase flow in split mode (three shop processes,
//!   `--contexts product|order|payment`, each on its own database, ports over
//!   HTTP, events over RabbitMQ) beside the monolith's, with the HTTP calls
//!   between processes and the broker messages a purchase costs.
//!
//! Usage (BENCHMARKS.md), one command:
//!   cargo run --release -p shop-bench --features mysql -- \
//!     --postgres postgres://postgres@127.0.0.1:5432/postgres --mysql mysql://root@127.0.0.1:3306/mysql
//! Options: --shop PATH (default: target/release/shop, built first with `cargo build --release -p shop`),
//!          --seconds N (per scenario, default 10), --warmup N (unrecorded load before each, default 1),
//!          --smoke (a few seconds in all, for CI: no peer, no pgbench; the SQLite and
//!          MySQL ceilings for half a second), --out FILE
//!          (default target/bench/results.json), --postgres URL (also run on PostgreSQL; or
//!          SHOP_BENCH_POSTGRES_URL), --mysql URL (also run on MySQL/MariaDB, a mysql:// URL of
//!          any database on the server; or SHOP_BENCH_MYSQL_URL; the driver must be built with
//!          the feature mysql, and it builds shop with it too), --db-prefix NAME (the databases
//!          it creates on those servers and drops when that backend's part ends: NAME,
//!          NAME_ceiling, NAME_peer, NAME_expiry, NAME_split_{product,order,payment}; default shop_bench),
//!          --peers DIR (run_peer.sh and stop_peer.sh; default ../shared/peers next to the
//!          repository, or SHOP_BENCH_PEERS), --no-peer, --no-pgbench,
//!          --expiry-orders N (default 3000), --rabbitmq URL (split mode's broker; or
//!          SHOP_BENCH_RABBITMQ_URL; default amqp://guest:guest@127.0.0.1:5672/%2f), --no-split,
//!          --only PARTS (some of ceiling,peer,shop,split,expiry:
//!          for development; the table then shows n/a for the rest), --backends LIST (some of
//!          sqlite,postgres,mysql: for development; default every one configured).
//! The shops it starts check customer tokens under a fixed `SHOP__AUTH__JWT_SECRET`
//! (server.rs), and every customer request carries its user's token, minted once
//! up front; the Flask peer takes none.
//! `shop-bench --mint USER` only prints a customer token for USER, under
//! `SHOP__AUTH__JWT_SECRET` when set (else the bench's key), for a hand run of
//! ../shared/peers/measure.sh against a shop: `WRK_BEARER=$(...) WRK_USER_ID=USER`.

mod ceiling;
mod load;
mod peer;
mod scenarios;
mod server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use diesel::RunQueryDsl;
use serde_json::{Value, json};

use scenarios::Settings;

struct Options {
    /// The binary under test; `None`: build and use target/release/shop.
    shop: Option<PathBuf>,
    seconds: f64,
    warmup: f64,
    smoke: bool,
    postgres: Option<String>,
    /// A MySQL/MariaDB server (`--mysql`); only a driver built with the feature `mysql` takes one.
    mysql: Option<String>,
    db_prefix: String,
    out: PathBuf,
    peers: PathBuf,
    no_peer: bool,
    no_pgbench: bool,
    expiry_orders: usize,
    /// The parts to run (ceiling, peer, shop, expiry); all by default.
    only: Option<Vec<String>>,
    /// The backends to run (sqlite, postgres, mysql); all those configured by default.
    backends: Option<Vec<String>>,
    /// The RabbitMQ of the split-mode part (`--rabbitmq`).
    rabbitmq: String,
    no_split: bool,
}

impl Options {
    fn runs_backend(&self, backend: &str) -> bool {
        self.backends
            .as_ref()
            .is_none_or(|list| list.iter().any(|b| b == backend))
    }

    fn runs(&self, part: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|parts| parts.iter().any(|p| p == part))
    }
}

fn options() -> Result<Options> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut o = Options {
        shop: None,
        seconds: 10.0,
        warmup: 1.0,
        smoke: false,
        postgres: std::env::var("SHOP_BENCH_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty()),
        mysql: std::env::var("SHOP_BENCH_MYSQL_URL")
            .ok()
            .filter(|u| !u.is_empty()),
        out: PathBuf::from("target/bench/results.json"),
        db_prefix: "shop_bench".to_owned(),
        peers: std::env::var_os("SHOP_BENCH_PEERS")
            .map_or_else(|| repo.join("../shared/peers"), PathBuf::from),
        no_peer: false,
        no_pgbench: false,
        expiry_orders: 3000,
        only: None,
        backends: None,
        rabbitmq: std::env::var("SHOP_BENCH_RABBITMQ_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned()),
        no_split: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--shop" => o.shop = Some(args.next().context("--shop PATH")?.into()),
            "--seconds" => o.seconds = args.next().context("--seconds N")?.parse()?,
            "--warmup" => o.warmup = args.next().context("--warmup N")?.parse()?,
            "--smoke" => o.smoke = true,
            "--postgres" => o.postgres = Some(args.next().context("--postgres URL")?),
            "--mysql" => o.mysql = Some(args.next().context("--mysql URL")?),
            "--out" => o.out = args.next().context("--out FILE")?.into(),
            "--db-prefix" => o.db_prefix = args.next().context("--db-prefix NAME")?,
            "--peers" => o.peers = args.next().context("--peers DIR")?.into(),
            "--no-peer" => o.no_peer = true,
            "--no-pgbench" => o.no_pgbench = true,
            "--no-split" => o.no_split = true,
            "--rabbitmq" => o.rabbitmq = args.next().context("--rabbitmq URL")?,
            "--only" => {
                let parts: Vec<String> = args
                    .next()
                    .context("--only PARTS")?
                    .split(',')
                    .map(str::to_owned)
                    .collect();
                if let Some(p) = parts
                    .iter()
                    .find(|p| !["ceiling", "peer", "shop", "split", "expiry"].contains(&p.as_str()))
                {
                    bail!(
                        "--only takes ceiling, peer, shop, split, expiry (comma-separated), not {p}"
                    );
                }
                o.only = Some(parts);
            }
            "--backends" => {
                let list: Vec<String> = args
                    .next()
                    .context("--backends LIST")?
                    .split(',')
                    .map(str::to_owned)
                    .collect();
                if let Some(b) = list
                    .iter()
                    .find(|b| !["sqlite", "postgres", "mysql"].contains(&b.as_str()))
                {
                    bail!("--backends takes sqlite, postgres, mysql (comma-separated), not {b}");
                }
                o.backends = Some(list);
            }
            "--expiry-orders" => {
                o.expiry_orders = args.next().context("--expiry-orders N")?.parse()?;
            }
            other => bail!("unknown argument {other}; see the top of tests/bench/src/main.rs"),
        }
    }
    if o.mysql.is_some() && !cfg!(feature = "mysql") {
        bail!(
            "--mysql (or SHOP_BENCH_MYSQL_URL) needs the driver built with the feature mysql: \
             cargo run --release -p shop-bench --features mysql -- ..."
        );
    }
    if o.mysql.as_ref().is_some_and(|u| !u.starts_with("mysql://")) {
        bail!("--mysql takes a mysql:// URL");
    }
    if let Some(list) = &o.backends {
        if list.iter().any(|b| b == "postgres") && o.postgres.is_none() {
            bail!("--backends postgres needs --postgres URL");
        }
        if list.iter().any(|b| b == "mysql") && o.mysql.is_none() {
            bail!("--backends mysql needs --mysql URL");
        }
    }
    if o.smoke {
        o.seconds = o.seconds.min(1.0);
        o.warmup = 0.0;
        o.expiry_orders = o.expiry_orders.min(100);
    }
    if !o
        .db_prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        bail!("--db-prefix takes letters, digits and _");
    }
    Ok(o)
}

/// Where each backend's databases are.
enum Backend {
    Sqlite {
        dir: PathBuf,
    },
    Postgres {
        server: String,
    },
    /// A MySQL or MariaDB server; `label` says which (from its `VERSION()`).
    #[cfg(feature = "mysql")]
    Mysql {
        server: String,
        label: &'static str,
    },
}

impl Backend {
    fn label(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "SQLite",
            Self::Postgres { .. } => "PostgreSQL",
            #[cfg(feature = "mysql")]
            Self::Mysql { label, .. } => label,
        }
    }

    /// Drops the databases this run made on the backend's server.
    fn drop_all(&self, names: &[String]) {
        match self {
            Self::Sqlite { .. } => {}
            Self::Postgres { server } => drop_postgres(server, names),
            #[cfg(feature = "mysql")]
            Self::Mysql { server, .. } => mysql::drop(server, names),
        }
    }

    /// A fresh database for one part of the run.
    fn fresh(&self, o: &Options, part: &str, created: &mut Vec<String>) -> Result<String> {
        match self {
            Self::Sqlite { dir } => {
                let dir = dir.join(part);
                std::fs::create_dir_all(&dir)?;
                Ok(format!("sqlite://{}", dir.join("shop.db").display()))
            }
            Self::Postgres { server } => {
                let name = if part == "shop" {
                    o.db_prefix.clone()
                } else {
                    format!("{}_{part}", o.db_prefix)
                };
                let url = fresh_postgres(server, &name)?;
                created.push(name);
                Ok(url)
            }
            #[cfg(feature = "mysql")]
            Self::Mysql { server, .. } => {
                let name = if part == "shop" {
                    o.db_prefix.clone()
                } else {
                    format!("{}_{part}", o.db_prefix)
                };
                let url = mysql::fresh(server, &name)?;
                created.push(name);
                Ok(url)
            }
        }
    }
}

fn skipped(why: impl Into<String>) -> Value {
    json!({"skipped": why.into()})
}

/// Every part of the run on one backend, one after the other (never two servers at once).
async fn backend(
    o: &Options,
    s: &Settings,
    b: &Backend,
    created: &mut Vec<String>,
) -> Result<Value> {
    let mut r = serde_json::Map::new();
    let seconds = o.seconds.max(0.1);
    eprintln!("{}: engine ceiling", b.label());
    let ceiling = match b {
        _ if !o.runs("ceiling") => skipped("--only"),
        Backend::Sqlite { dir } => {
            let (shop, file) = (s.shop.clone(), dir.join("ceiling.db"));
            let duration = Duration::from_secs_f64(if o.smoke { 0.5 } else { seconds });
            tokio::task::spawn_blocking(move || ceiling::sqlite(&shop, &file, duration)).await??
        }
        Backend::Postgres { .. } if o.smoke => skipped("--smoke: pgbench is not run"),
        Backend::Postgres { .. } if o.no_pgbench => skipped("--no-pgbench"),
        Backend::Postgres { .. } => match ceiling::find_pgbench() {
            None => skipped("no pgbench on PATH nor in /usr/lib/postgresql/*/bin"),
            Some(pgbench) => {
                let url = b.fresh(o, "ceiling", created)?;
                let (shop, dir) = (s.shop.clone(), std::env::temp_dir());
                let secs = seconds.round().max(1.0) as u64;
                tokio::task::spawn_blocking(move || {
                    ceiling::postgres(&shop, &pgbench, &url, &dir, secs)
                })
                .await??
            }
        },
        #[cfg(feature = "mysql")]
        Backend::Mysql { .. } => {
            let url = b.fresh(o, "ceiling", created)?;
            let shop = s.shop.clone();
            let duration = Duration::from_secs_f64(if o.smoke { 0.5 } else { seconds });
            tokio::task::spawn_blocking(move || ceiling::mysql(&shop, &url, duration)).await??
        }
    };
    r.insert("ceiling".into(), ceiling);

    eprintln!("{}: Flask peer", b.label());
    let peer = if !o.runs("peer") {
        skipped("--only")
    } else if !matches!(b, Backend::Sqlite { .. } | Backend::Postgres { .. }) {
        skipped("the Flask peer has no MySQL mode (compare with the engine ceiling)")
    } else if o.smoke {
        skipped("--smoke: the peer is not run")
    } else if o.no_peer {
        skipped("--no-peer")
    } else if !o.peers.join("run_peer.sh").is_file() {
        skipped(format!("no run_peer.sh in {}", o.peers.display()))
    } else {
        let url = match b {
            // run_peer.sh takes sqlite:////absolute/path
            Backend::Sqlite { dir } => {
                let dir = std::path::absolute(dir.join("peer"))?;
                std::fs::create_dir_all(&dir)?;
                format!("sqlite:///{}", dir.join("peer.db").display())
            }
            _ => b.fresh(o, "peer", created)?,
        };
        match peer::Peer::start(&o.peers, &url) {
            Ok(p) => {
                let result = scenarios::peer(s, &p).await;
                drop(p);
                result?
            }
            Err(e) => skipped(format!("the peer did not start: {e:#}")),
        }
    };
    r.insert("peer".into(), peer);

    if o.runs("shop") {
        eprintln!("{}: shop", b.label());
        let url = b.fresh(o, "shop", created)?;
        r.insert("shop".into(), scenarios::shop(s, &url).await?);
    }
    if o.runs("split") {
        let split = match b {
            _ if o.no_split => skipped("--no-split"),
            Backend::Postgres { .. } => {
                eprintln!("{}: shop in split mode", b.label());
                let mut urls = Vec::new();
                for context in ["product", "order", "payment"] {
                    urls.push(b.fresh(o, &format!("split_{context}"), created)?);
                }
                scenarios::split(s, [&urls[0], &urls[1], &urls[2]], &o.rabbitmq).await?
            }
            _ => skipped("split mode is measured on PostgreSQL"),
        };
        r.insert("split".into(), split);
    }
    if o.runs("expiry") {
        eprintln!("{}: expiry", b.label());
        let url = b.fresh(o, "expiry", created)?;
        r.insert(
            "expiry".into(),
            scenarios::expiry(s, &s.shop, &url, o.expiry_orders).await?,
        );
    }
    Ok(Value::Object(r))
}

/// A fresh PostgreSQL database on the server `url` names.
fn fresh_postgres(url: &str, name: &str) -> Result<String> {
    use diesel::Connection;
    let mut conn = diesel::pg::PgConnection::establish(url)?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn)?;
    diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn)?;
    Ok(with_database(url, name))
}

/// `url` (`scheme://user@host:port/db?query`, the path optional) naming the database `name` instead.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority = base.find("://").map_or(0, |s| s + 3);
    let host = base[authority..]
        .find('/')
        .map_or(base, |slash| &base[..authority + slash]);
    match query {
        Some(q) => format!("{host}/{name}?{q}"),
        None => format!("{host}/{name}"),
    }
}

/// The MySQL/MariaDB server's databases, through diesel's MysqlConnection.
#[cfg(feature = "mysql")]
mod mysql {
    use anyhow::Result;
    use diesel::mysql::MysqlConnection;
    use diesel::{Connection, QueryableByName, RunQueryDsl};

    /// "MariaDB" or "MySQL", as the server at `url` says.
    pub fn label(url: &str) -> Result<&'static str> {
        #[derive(QueryableByName)]
        struct V {
            #[diesel(sql_type = diesel::sql_types::Text)]
            v: String,
        }
        let mut conn = MysqlConnection::establish(url)?;
        let v: V = diesel::sql_query("SELECT VERSION() AS v").get_result(&mut conn)?;
        Ok(if v.v.contains("MariaDB") {
            "MariaDB"
        } else {
            "MySQL"
        })
    }

    /// A fresh database `name` on the server `url` names (utf8mb4, compared byte for byte,
    /// as shop's migrations make its tables); its URL.
    pub fn fresh(url: &str, name: &str) -> Result<String> {
        let mut conn = MysqlConnection::establish(url)?;
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name}")).execute(&mut conn)?;
        diesel::sql_query(format!(
            "CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        ))
        .execute(&mut conn)?;
        Ok(super::with_database(url, name))
    }

    pub fn drop(url: &str, names: &[String]) {
        if let Ok(mut conn) = MysqlConnection::establish(url) {
            for name in names {
                let _ =
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name}")).execute(&mut conn);
            }
        }
    }
}

fn drop_postgres(url: &str, names: &[String]) {
    use diesel::Connection;
    if let Ok(mut conn) = diesel::pg::PgConnection::establish(url) {
        for name in names {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn);
        }
    }
}

// ----------------------------------------------------------------- table --

fn f(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn fmt_ratio(name: &str, r: Option<f64>) -> Option<String> {
    r.map(|r| format!("{name} {r:.2}"))
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.digits$}"))
}

fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn row(name: &str, s: &Value, ratios: &[Option<String>]) {
    if s.get("per_second").is_none() {
        println!("  {name:<46} {}", s["skipped"].as_str().unwrap_or("n/a"));
        return;
    }
    let errors = s["count"].as_f64().unwrap_or(0.0) - s["ok"].as_f64().unwrap_or(0.0);
    let ratios: Vec<&str> = ratios.iter().flatten().map(String::as_str).collect();
    let line = format!(
        "  {name:<46} {:>9}/s  p50 {:>7.2}  p99 {:>7.2} ms  busy {:>4} (load gen {:>4}){}  {}",
        thousands(f(&s["per_second"]).unwrap_or(0.0)),
        f(&s["p50_ms"]).unwrap_or(0.0),
        f(&s["p99_ms"]).unwrap_or(0.0),
        fmt_opt(f(&s["busy_cores"]), 2),
        fmt_opt(f(&s["loadgen_cores"]), 2),
        if errors > 0.0 {
            format!("  non-2xx {errors}")
        } else {
            String::new()
        },
        ratios.join(", ")
    );
    println!("{}", line.trim_end());
}

fn print_backend(label: &str, r: &Value, o: &Options) -> Vec<(String, String)> {
    let (c, p, s, e) = (&r["ceiling"], &r["peer"], &r["shop"], &r["expiry"]);
    let rate = |v: &Value| f(&v["per_second"]);
    println!(
        "\n{label}: {} clients, {} s a scenario (after {} s unrecorded){}",
        scenarios::CLIENTS,
        o.seconds,
        o.warmup,
        if o.smoke {
            " -- --smoke: not figures"
        } else {
            ""
        }
    );

    // the engine ceilings
    let (ceil_a, ceil_b) = if c.get("skipped").is_some() {
        println!(
            "  {:<46} skipped: {}",
            "engine ceiling",
            c["skipped"].as_str().unwrap_or("")
        );
        (None, None)
    } else if c.get("commit_per_order").is_some() {
        let (a, b) = (rate(&c["commit_per_order"]), rate(&c["batched_64"]));
        let cpu = |v: &Value| {
            format!(
                "{} a CPU-second (waited {} s for a core)",
                thousands(f(&v["per_cpu_second"]).unwrap_or(0.0)),
                fmt_opt(f(&v["waited_for_cpu_seconds"]), 2)
            )
        };
        println!(
            "  {:<46} {:>9}/s  orders, {}; {} statements an order, one connection, one thread",
            "engine ceiling (a): a commit per order",
            thousands(a.unwrap_or(0.0)),
            cpu(&c["commit_per_order"]),
            c["statements_per_order"]
        );
        println!(
            "  {:<46} {:>9}/s  orders, {}; 64 a commit, no savepoints (as the seam when no unit fails)",
            "engine ceiling (b): batched as the seam batches",
            thousands(b.unwrap_or(0.0)),
            cpu(&c["batched_64"])
        );
        (a, b)
    } else if c.get("client_cores").is_some() {
        let a = rate(c);
        println!(
            "  {:<46} {:>9}/s  orders; {} statements an order, a commit per order, {} client threads, latency avg {} ms, p99 {} ms, cpu {} (clients {}){}",
            "engine ceiling: the same statements (diesel)",
            thousands(a.unwrap_or(0.0)),
            c["statements_per_order"],
            c["clients"],
            fmt_opt(f(&c["latency_average_ms"]), 2),
            fmt_opt(f(&c["p99_ms"]), 2),
            fmt_opt(f(&c["busy_cores"]), 2),
            fmt_opt(f(&c["client_cores"]), 2),
            match c["retried"].as_u64() {
                Some(n) if n > 0 => format!(", {n} retried"),
                _ => String::new(),
            }
        );
        (a, None)
    } else {
        let a = rate(c);
        println!(
            "  {:<46} {:>9}/s  orders; {} statements an order, {} clients, latency avg {} ms, cpu {}",
            "engine ceiling: pgbench, the same statements",
            thousands(a.unwrap_or(0.0)),
            c["statements_per_order"],
            c["clients"],
            fmt_opt(f(&c["latency_average_ms"]), 2),
            fmt_opt(f(&c["busy_cores"]), 2)
        );
        (a, None)
    };
    let vs_ceiling = |x: Option<f64>, who: &str| -> Vec<Option<String>> {
        let a = if ceil_b.is_some() { " a" } else { "" };
        vec![
            fmt_ratio(&format!("{who}/ceiling{a}"), ratio(x, ceil_a)),
            fmt_ratio(&format!("{who}/ceiling b"), ratio(x, ceil_b)),
        ]
    };

    // the peer
    let (peer_read, peer_order) = (
        rate(&p["read_get_product_info"]),
        rate(&p["order_create_order"]),
    );
    if p.get("skipped").is_some() {
        println!(
            "  {:<46} skipped: {}",
            "peer (Flask)",
            p["skipped"].as_str().unwrap_or("")
        );
    } else {
        println!("  peer: {}", p["server"].as_str().unwrap_or(""));
        row(
            "peer GET /getProductInfo?productId=",
            &p["read_get_product_info"],
            &[],
        );
        row(
            "peer POST /createOrder",
            &p["order_create_order"],
            &vs_ceiling(peer_order, "peer"),
        );
    }

    // shop
    let health = rate(&s["health_live"]);
    if s.is_null() {
        println!("  {:<46} not run", "shop");
    } else {
        row(
            "shop GET /health/live (framework ceiling)",
            &s["health_live"],
            &[],
        );
        for (name, key) in [
            ("shop GET /getProductInfo?productId= (alias)", "read_alias"),
            ("shop GET /api/v1/products/{id}", "read_rest"),
        ] {
            row(
                name,
                &s[key],
                &[
                    fmt_ratio("shop/peer", ratio(rate(&s[key]), peer_read)),
                    fmt_ratio("/health", ratio(rate(&s[key]), health)),
                ],
            );
        }
        for (name, key) in [
            ("shop POST /createOrder (alias)", "order_alias"),
            ("shop POST /api/v1/orders", "order_rest"),
        ] {
            let mut ratios = vec![fmt_ratio("shop/peer", ratio(rate(&s[key]), peer_order))];
            ratios.extend(vs_ceiling(rate(&s[key]), "shop"));
            row(name, &s[key], &ratios);
        }
        let work = |w: &Value| {
            format!(
                "statements {}, commits {} (over {} orders{})",
                fmt_opt(f(&w["statements"]), 1),
                fmt_opt(f(&w["commits"]), 2),
                fmt_opt(f(&w["over"]), 0),
                if w["outbox_drained"] == false {
                    "; the outbox did NOT drain"
                } else {
                    ""
                }
            )
        };
        println!(
            "  {:<46} {}",
            "shop database work per createOrder (REST)",
            work(&s["db_per_create_order"])
        );
        row(
            "shop purchase: order→pay→notify→seen paid",
            &s["purchase"],
            &[],
        );
        let n = &s["notify_to_paid"];
        println!(
            "  {:<46} {:>11}  p50 {:>7.2}  p99 {:>7.2} ms",
            "shop purchase: notify → seen paid",
            "",
            f(&n["p50_ms"]).unwrap_or(0.0),
            f(&n["p99_ms"]).unwrap_or(0.0)
        );
        println!(
            "  {:<46} {}",
            "shop database work per purchase",
            work(&s["db_per_purchase"])
        );
        let fl = &s["flash_sale"];
        println!(
            "  {:<46} {} buyers, {} units: the {}th unit sold after {} ms; all {} buyers answered after {} ms; sold {}, stock left {}",
            "shop flash sale",
            fl["buyers"],
            fl["units"],
            fl["units"],
            fmt_opt(f(&fl["last_unit_sold_ms"]), 0),
            fl["buyers"],
            fmt_opt(f(&fl["all_answered_ms"]), 0),
            fl["sold"],
            fl["stock_left"]
        );
        println!(
            "  {:<46} start-up {} ms, idle {} MiB, after load {} MiB, peak {} MiB",
            "shop server",
            fmt_opt(f(&s["startup_ms"]), 0),
            fmt_opt(f(&s["idle_rss_mib"]), 1),
            fmt_opt(f(&s["rss_after_load_mib"]), 1),
            fmt_opt(f(&s["peak_rss_mib"]), 1)
        );
    }
    print_split(&r["split"], s);
    if !e.is_null() {
        println!(
            "  {:<46} {} orders placed in {:.1} s, timeout {} s, sweep {} ms: cancelled after expiresAt p50 {} ms, p99 {} ms, max {} ms; {} of {} cancelled within {} s; stock {}",
            "shop expiry",
            e["orders"],
            f(&e["created_in_ms"]).unwrap_or(0.0) / 1000.0,
            e["payment_timeout_s"],
            e["sweep_ms"],
            fmt_opt(f(&e["late_p50_ms"]), 0),
            fmt_opt(f(&e["late_p99_ms"]), 0),
            fmt_opt(f(&e["late_max_ms"]), 0),
            e["cancelled"],
            e["orders"],
            e["not_cancelled_within_s"],
            match f(&e["stock_back_after_last_expiry_ms"]) {
                Some(ms) => format!("all back {ms:.0} ms after the last expiresAt"),
                None => format!(
                    "NOT all back 30 s later: {} units still held (outbox {})",
                    e["units_still_held"], e["outbox_at_end"]
                ),
            }
        );
    }
    if o.smoke {
        return Vec::new();
    }

    // the goals of issue 10, judged on this run
    let (order_x, read_x) = if label == "SQLite" {
        (3.0, 10.0)
    } else {
        (2.0, 5.0)
    };
    let judge = |v: Option<f64>, ok: &dyn Fn(f64) -> bool, shown: String| -> String {
        match v {
            None => "n/a".to_owned(),
            Some(v) if ok(v) => format!("met ({shown})"),
            Some(_) => format!("not met ({shown})"),
        }
    };
    let order_vs_peer = ratio(rate(&s["order_alias"]), peer_order);
    let read_vs_peer = ratio(rate(&s["read_alias"]), peer_read);
    let read_vs_health = ratio(rate(&s["read_rest"]), health);
    let order_p99 = f(&s["order_rest"]["p99_ms"]);
    let paid_p99 = f(&s["notify_to_paid"]["p99_ms"]);
    let idle = f(&s["idle_rss_mib"]);
    let late = f(&e["late_max_ms"]);
    let goals = vec![
        (
            format!("createOrder ≥ {order_x}× the peer"),
            judge(order_vs_peer, &|v| v >= order_x, fmt_opt(order_vs_peer, 2)),
        ),
        (
            format!("getProductInfo ≥ {read_x}× the peer"),
            judge(read_vs_peer, &|v| v >= read_x, fmt_opt(read_vs_peer, 2)),
        ),
        (
            "getProductInfo ≥ 0.8 of /health/live".to_owned(),
            judge(read_vs_health, &|v| v >= 0.8, fmt_opt(read_vs_health, 2)),
        ),
        (
            "createOrder p99 < 20 ms".to_owned(),
            judge(
                order_p99,
                &|v| v < 20.0,
                format!("{} ms", fmt_opt(order_p99, 1)),
            ),
        ),
        (
            "notify → paid p99 < 50 ms".to_owned(),
            judge(
                paid_p99,
                &|v| v < 50.0,
                format!("{} ms", fmt_opt(paid_p99, 1)),
            ),
        ),
        (
            "idle memory < 30 MB".to_owned(),
            judge(
                idle,
                &|v| v * 1.048_576 < 30.0,
                format!("{} MiB", fmt_opt(idle, 1)),
            ),
        ),
        (
            "expiry: all cancelled within 2 s".to_owned(),
            if e["not_cancelled"].as_u64().unwrap_or(0) > 0 {
                format!("not met ({} not cancelled)", e["not_cancelled"])
            } else {
                judge(
                    late,
                    &|v| v <= 2000.0,
                    format!("max {} ms", fmt_opt(late, 0)),
                )
            },
        ),
    ];
    println!("  goals (issue 10), judged on this run:");
    for (goal, verdict) in &goals {
        println!("    {goal:<44} {verdict}");
    }
    goals
}

/// The split-mode part's lines: its purchase flow beside the monolith's (`s`,
/// the same run's shop part), and what the split costs per purchase.
fn print_split(v: &Value, s: &Value) {
    if v.is_null() {
        return;
    }
    if let Some(why) = v["skipped"].as_str() {
        println!("  {:<46} skipped: {why}", "shop split mode");
        return;
    }
    let rate = |v: &Value| f(&v["per_second"]);
    row(
        "split purchase: order→pay→notify→seen paid",
        &v["purchase"],
        &[fmt_ratio(
            "split/monolith",
            ratio(rate(&v["purchase"]), rate(&s["purchase"])),
        )],
    );
    let (n, m) = (&v["notify_to_paid"], &s["notify_to_paid"]);
    println!(
        "  {:<46} {:>11}  p50 {:>7.2}  p99 {:>7.2} ms  (monolith p50 {}, p99 {} ms)",
        "split purchase: notify → seen paid",
        "",
        f(&n["p50_ms"]).unwrap_or(0.0),
        f(&n["p99_ms"]).unwrap_or(0.0),
        fmt_opt(f(&m["p50_ms"]), 2),
        fmt_opt(f(&m["p99_ms"]), 2)
    );
    let c = &v["per_purchase"];
    println!(
        "  {:<46} HTTP calls between processes {} (order→product {}, payment→order {}); broker messages published {} (product {}, order {}, payment {}), consumed {} (product {}, order {}, payment {}){}",
        "split cost per purchase",
        fmt_opt(f(&c["port_calls"]), 2),
        fmt_opt(f(&c["order"]["port_calls"]), 2),
        fmt_opt(f(&c["payment"]["port_calls"]), 2),
        fmt_opt(f(&c["bus_published"]), 2),
        fmt_opt(f(&c["product"]["bus_published"]), 2),
        fmt_opt(f(&c["order"]["bus_published"]), 2),
        fmt_opt(f(&c["payment"]["bus_published"]), 2),
        fmt_opt(f(&c["bus_consumed"]), 2),
        fmt_opt(f(&c["product"]["bus_consumed"]), 2),
        fmt_opt(f(&c["order"]["bus_consumed"]), 2),
        fmt_opt(f(&c["payment"]["bus_consumed"]), 2),
        if c["settled"] == false {
            "; did NOT settle in 60 s"
        } else {
            ""
        }
    );
    let w = &s["db_per_purchase"];
    println!(
        "  {:<46} statements {}, commits {} in all three (monolith {}, {}; over {} orders)",
        "split database work per purchase",
        fmt_opt(f(&c["statements"]), 1),
        fmt_opt(f(&c["commits"]), 2),
        fmt_opt(f(&w["statements"]), 1),
        fmt_opt(f(&w["commits"]), 2),
        fmt_opt(f(&c["over"]), 0)
    );
    let (st, mem) = (&v["startup_ms"], &v["memory"]);
    println!(
        "  {:<46} start-up {}/{}/{} ms, after load {}/{}/{} MiB (product/order/payment)",
        "split processes",
        fmt_opt(f(&st["product"]), 0),
        fmt_opt(f(&st["order"]), 0),
        fmt_opt(f(&st["payment"]), 0),
        fmt_opt(f(&mem["product"]["rss_mib"]), 1),
        fmt_opt(f(&mem["order"]["rss_mib"]), 1),
        fmt_opt(f(&mem["payment"]["rss_mib"]), 1)
    );
}

/// Builds the release `shop` (a no-op when it is up to date) and returns its
/// path; with the feature `mysql` when the run includes a MySQL server (then
/// every backend of the run is measured on that one binary).
fn release_shop(mysql: bool) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(cargo);
    build.args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "shop",
        "--bin",
        "shop",
    ]);
    if mysql {
        build.args(["--features", "mysql"]);
    }
    if !build.status()?.success() {
        bail!(
            "cargo build --release -p shop{} failed",
            if mysql { " --features mysql" } else { "" }
        );
    }
    let target =
        std::env::var("CARGO_TARGET_DIR").map_or_else(|_| PathBuf::from("target"), PathBuf::from);
    Ok(target.join("release").join("shop"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, user] = args.as_slice()
        && flag == "--mint"
    {
        let secret = std::env::var("SHOP__AUTH__JWT_SECRET")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| server::JWT_SECRET.to_owned());
        println!("{}", server::mint_under(&secret, user));
        return Ok(());
    }
    let mut o = options()?;
    // Which server --mysql names, asked before anything is built or run (a wrong URL fails first).
    #[cfg(feature = "mysql")]
    let mysql_label = match o.mysql.as_ref().filter(|_| o.runs_backend("mysql")) {
        Some(url) => Some(mysql::label(url).context("--mysql: the server")?),
        None => None,
    };
    let shop = match &o.shop {
        Some(p) => p.clone(),
        None => release_shop(o.mysql.is_some())?,
    };
    o.shop = Some(shop.clone());
    let dir = std::env::temp_dir().join(format!("shop-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let s = Settings {
        shop: shop.clone(),
        duration: Duration::from_secs_f64(o.seconds.max(0.1)),
        warmup: Duration::from_secs_f64(o.warmup.max(0.0)),
        smoke: o.smoke,
        catalog: if o.smoke { 200 } else { 10_000 },
    };
    let mut all = serde_json::Map::new();
    all.insert(
        "settings".into(),
        json!({"seconds_per_scenario": o.seconds, "warmup_seconds": o.warmup, "smoke": o.smoke,
               "clients": scenarios::CLIENTS, "products": s.catalog,
               "shop": shop.display().to_string(),
               "peers": o.peers.display().to_string(),
               "started_at": chrono::Utc::now().to_rfc3339(),
               "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)}),
    );
    let mut backends = Vec::new();
    if o.runs_backend("sqlite") {
        backends.push(Backend::Sqlite { dir: dir.clone() });
    }
    if let Some(url) = o.postgres.as_ref().filter(|_| o.runs_backend("postgres")) {
        backends.push(Backend::Postgres {
            server: url.clone(),
        });
    }
    #[cfg(feature = "mysql")]
    if let (Some(url), Some(label)) = (&o.mysql, mysql_label) {
        backends.push(Backend::Mysql {
            server: url.clone(),
            label,
        });
    }
    let mut outcome = Ok(());
    for b in &backends {
        let mut created = Vec::new();
        let result = backend(&o, &s, b, &mut created).await;
        // The databases it made go as soon as its part is over (no server uses them then).
        b.drop_all(&created);
        match result {
            Ok(r) => {
                let goals = print_backend(b.label(), &r, &o);
                let mut r = r;
                r["goals"] = goals
                    .into_iter()
                    .map(|(g, v)| (g, json!(v)))
                    .collect::<serde_json::Map<_, _>>()
                    .into();
                all.insert(b.label().to_lowercase(), r);
            }
            Err(e) => {
                outcome = Err(e.context(b.label()));
                break;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    outcome?;
    if let Some(parent) = o.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(
        &o.out,
        serde_json::to_string_pretty(&Value::Object(all))? + "\n",
    )?;
    println!("\nresults: {}", o.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn a_server_url_names_each_fresh_database() {
        let pg = "postgres://postgres@127.0.0.1:5432/postgres";
        assert_eq!(
            with_database(pg, "shop_bench"),
            "postgres://postgres@127.0.0.1:5432/shop_bench"
        );
        assert_eq!(
            with_database("mysql://root@127.0.0.1:3306", "shop_bench_ceiling"),
            "mysql://root@127.0.0.1:3306/shop_bench_ceiling"
        );
        assert_eq!(
            with_database("mysql://root:pw@db:3306/mysql?ssl_mode=disabled", "b"),
            "mysql://root:pw@db:3306/b?ssl_mode=disabled"
        );
    }
}
