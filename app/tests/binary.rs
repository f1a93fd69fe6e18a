#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

//! The real `shop` binary: its command line, its document, and a served demo.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn shop() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shop"))
}

#[test]
fn help_explains_every_command() {
    let output = shop().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for word in [
        "serve",
        "migrate",
        "openapi",
        "--config",
        "DATABASE_URL",
        "SHOP__",
    ] {
        assert!(
            help.contains(word),
            "--help does not mention {word}:\n{help}"
        );
    }
    let serve =
        String::from_utf8(shop().args(["serve", "--help"]).output().unwrap().stdout).unwrap();
    assert!(serve.contains("--demo"));
}

/// `openapi.yaml` is what the code generates; regenerate it with
/// `cargo run -- openapi > openapi.yaml` when this fails.
#[test]
fn the_committed_openapi_document_is_current() {
    let output = shop()
        .arg("openapi")
        .env("DATABASE_URL", "postgres://nowhere.invalid/x")
        .env("SHOP__SERVER__BIND", "0.0.0.0:1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let generated = String::from_utf8(output.stdout).unwrap();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml")).unwrap();
    assert!(
        generated == committed,
        "openapi.yaml is stale: run `cargo run -- openapi > openapi.yaml` and commit it"
    );
}

/// `openapi-internal.yaml` is what the code generates for the internal API;
/// regenerate it with `cargo run -- openapi --internal > openapi-internal.yaml`.
/// No internal path, operation or security scheme leaks into the public document.
#[test]
fn the_committed_internal_document_is_current_and_apart_from_the_public_one() {
    let output = shop().args(["openapi", "--internal"]).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let generated = String::from_utf8(output.stdout).unwrap();
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../openapi-internal.yaml"
    ))
    .unwrap();
    assert!(
        generated == committed,
        "openapi-internal.yaml is stale: run `cargo run -- openapi --internal > openapi-internal.yaml` and commit it"
    );
    let internal: serde_json::Value = serde_norway::from_str(&generated).unwrap();
    let paths: Vec<&String> = internal["paths"].as_object().unwrap().keys().collect();
    assert!(paths.len() >= 3, "{paths:?}");
    assert!(
        paths.iter().all(|p| p.starts_with("/internal/v1/")),
        "{paths:?}"
    );
    let public = shop().arg("openapi").output().unwrap();
    let public = String::from_utf8(public.stdout).unwrap();
    let public_doc: serde_json::Value = serde_norway::from_str(&public).unwrap();
    for path in public_doc["paths"].as_object().unwrap().keys() {
        assert!(
            !path.starts_with("/internal"),
            "{path} is in the public document"
        );
    }
    for needle in [
        "/internal",
        "serviceToken",
        "SHOP__PORTS__TOKEN",
        "internalReserve",
    ] {
        assert!(
            !public.contains(needle),
            "the public document mentions {needle}"
        );
    }
}

/// A process killed on drop, so a failing test leaves nothing running.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `shop serve --demo` on a free port and returns it with its base URL.
fn serve_demo(database_url: &str) -> (Server, String, String) {
    let mut child = shop()
        .args(["serve", "--demo"])
        .env("DATABASE_URL", database_url)
        .env("SHOP__SERVER__BIND", "127.0.0.1:0")
        .env_remove("SHOP__AUTH__ADMIN_TOKEN")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let server = Server(child);
    let (mut token, mut base) = (None, None);
    let mut lines = stdout.lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(t) = line
            .split(": ")
            .nth(1)
            .filter(|_| line.starts_with("Admin token"))
        {
            token = Some(t.trim().to_owned());
        }
        if let Some(url) = line.strip_prefix("Swagger UI: ") {
            base = Some(url.trim().trim_end_matches("/swagger-ui/").to_owned());
            break;
        }
    }
    // Keep reading, as a terminal would.
    std::thread::spawn(move || lines.for_each(drop));
    (
        server,
        base.expect("the demo prints the Swagger UI address"),
        token.expect("the demo prints the admin token"),
    )
}

fn get(url: &str) -> (u16, String) {
    // A minimal HTTP/1.1 GET, to keep this test free of client crates.
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match std::net::TcpStream::connect(host) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("cannot connect to {host}: {e}"),
        }
    };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut bytes = Vec::new();
    stream
        .read_to_end(&mut bytes)
        .unwrap_or_else(|e| panic!("reading {url}: {e}"));
    let response = String::from_utf8_lossy(&bytes).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn serve_demo_seeds_the_catalog_once_and_serves_it() {
    let dir = std::env::temp_dir().join(format!("shop-binary-{}", std::process::id()));
    let url = format!("sqlite://{}", dir.join("nested/shop.db").display());
    {
        let (_server, base, token) = serve_demo(&url);
        assert!(token.len() >= 32, "a generated token is long");
        let (status, body) = get(&format!("{base}/health/ready"));
        assert_eq!(status, 200, "{body}");
        let (status, body) = get(&format!("{base}/api/v1/products"));
        assert_eq!(status, 200);
        assert!(body.contains("iPhone 15"), "{body}");
        let (status, _) = get(&format!("{base}/swagger-ui/"));
        assert_eq!(status, 200);
    }
    // A second start on the same database seeds nothing more, and a new token is generated.
    let (_server, base, _) = serve_demo(&url);
    let (_, body) = get(&format!("{base}/api/v1/products?limit=100"));
    assert_eq!(body.matches("\"productId\"").count(), 5, "{body}");
    drop(_server);
    let _ = std::fs::remove_dir_all(dir);
}

/// The versions of the migrations of `groups` (`bus`, `product`, ...) in
/// version order (`sqlite/product/2026-11-25-000001_products` is
/// `20261125000001`), and the tables and indexes their `up.sql` files create.
fn sqlite_migrations(groups: &[&str]) -> (Vec<String>, Vec<String>) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/sqlite");
    let mut folders: Vec<_> = groups
        .iter()
        .flat_map(|group| std::fs::read_dir(format!("{dir}/{group}")).unwrap())
        .map(|entry| entry.unwrap().path())
        .collect();
    folders.sort_by_key(|folder| folder.file_name().unwrap().to_owned());
    let mut versions = Vec::new();
    let mut objects = Vec::new();
    for folder in folders {
        let name = folder.file_name().unwrap().to_str().unwrap().to_owned();
        let version = name.split('_').next().unwrap().replace('-', "");
        versions.push(version);
        let sql: String = std::fs::read_to_string(folder.join("up.sql"))
            .unwrap()
            .lines()
            .map(|line| line.split("--").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        for statement in sql.split(';') {
            let words: Vec<&str> = statement.split_whitespace().collect();
            let name = match words.as_slice() {
                ["CREATE", "TABLE", name, ..]
                | ["CREATE", "INDEX", name, ..]
                | ["CREATE", "UNIQUE", "INDEX", name, ..] => name,
                _ => continue,
            };
            objects.push(words[..words.iter().position(|w| w == name).unwrap() + 1].join(" "));
        }
    }
    (versions, objects)
}

#[test]
fn migrate_applies_the_schema_and_exits() {
    let dir = std::env::temp_dir().join(format!("shop-migrate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let url = format!("sqlite://{}", dir.join("shop.db").display());
    let migrate = || {
        let output = shop()
            .arg("migrate")
            .env("DATABASE_URL", &url)
            .env("SHOP__LOG__FORMAT", "json")
            .env("RUST_LOG", "info")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        stderr
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|line| line["message"] == "migrations applied")
            .map(|line| line["applied"].as_str().unwrap().to_owned())
    };
    let (versions, objects) = sqlite_migrations(&["bus", "audit", "product", "order", "payment"]);
    assert!(versions.len() >= 5, "{versions:?}");
    assert!(objects.len() >= 17, "{objects:?}");
    assert_eq!(
        migrate(),
        Some(format!("{versions:?}")),
        "the first run applies every migration, in order"
    );
    assert_eq!(migrate(), None, "a second run applies nothing");

    // The schema is in the file.
    assert_sqlite_holds(&dir, &objects);
    // And the migration harness finds nothing left to apply on it.
    let database = shared_kernel::storage::db::DatabaseUrl::parse(&url).unwrap();
    let db = shared_kernel::storage::db::Db::connect(&database, &Default::default()).unwrap();
    let pending = shared_kernel::storage::db::run_migrations(
        &mut db.get_blocking().unwrap(),
        shop::migrations(),
    )
    .unwrap();
    assert!(pending.is_empty(), "{pending:?}");
    drop(db);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn migrate_with_contexts_applies_only_their_tables_and_the_bus() {
    let dir = std::env::temp_dir().join(format!("shop-migrate-product-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let url = format!("sqlite://{}", dir.join("shop.db").display());
    let output = shop()
        .args(["migrate", "--contexts", "product"])
        .env("DATABASE_URL", &url)
        // The flag wins over the variable.
        .env("SHOP__CONTEXTS", "order")
        .env("SHOP__LOG__FORMAT", "json")
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    let applied = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == "migrations applied")
        .map(|line| line["applied"].as_str().unwrap().to_owned());
    let (versions, objects) = sqlite_migrations(&["bus", "audit", "product"]);
    assert_eq!(applied, Some(format!("{versions:?}")));
    let (_, others) = sqlite_migrations(&["order", "payment"]);
    assert!(!others.is_empty());
    assert_sqlite_holds(&dir, &objects);
    let text = sqlite_schema_text(&dir);
    for object in &others {
        assert!(
            !text.contains(&format!("{object} ")),
            "a product-only database has `{object}`"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unknown_contexts_are_a_clear_error() {
    for (args, variable, named) in [
        (
            &["migrate", "--contexts", "product,shipping"][..],
            None,
            "--contexts",
        ),
        (&["serve", "--contexts", ""][..], None, "--contexts"),
        (&["migrate"][..], Some("products"), "SHOP__CONTEXTS"),
    ] {
        let mut command = shop();
        command
            .args(args)
            .env("DATABASE_URL", "sqlite:///nonexistent/dir/shop.db");
        if let Some(value) = variable {
            command.env("SHOP__CONTEXTS", value);
        }
        let output = command.output().unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(named), "{args:?}: {stderr}");
        assert!(
            stderr.contains("product, order and payment") || stderr.contains("no context"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_bad_database_url_is_a_clear_error() {
    let output = shop()
        .arg("migrate")
        .env("DATABASE_URL", "redis://u:secret@localhost")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATABASE_URL must start with"), "{stderr}");
    assert!(!stderr.contains("secret"));
}

/// The text of the SQLite database in `dir` and its WAL: SQLite keeps each
/// CREATE statement's text in its schema table, so the schema can be read
/// from it without a SQL client.
fn sqlite_schema_text(dir: &std::path::Path) -> String {
    let mut bytes = std::fs::read(dir.join("shop.db")).unwrap();
    bytes.extend(std::fs::read(dir.join("shop.db-wal")).unwrap_or_default());
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The SQLite database in `dir` holds each of `objects`.
fn assert_sqlite_holds(dir: &std::path::Path, objects: &[String]) {
    let text = sqlite_schema_text(dir);
    for object in objects {
        assert!(
            text.contains(&format!("{object} ")),
            "the database has no `{object}`"
        );
    }
}
