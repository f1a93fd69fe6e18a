//! What an adversarial client tries: ids and text that no database should
//! see, request bodies that never finish, more connections than the server
//! can hold, and malformed HTTP meant to fill the error log.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use shop_tests::{
    ADMIN_TOKEN, Backend, ShopProcess, StatusCode, TestApp, TestDatabase, on_every_backend,
    wait_until,
};

const SHOP: &str = env!("CARGO_BIN_EXE_shop-e2e");

on_every_backend!(
    ids_holding_nul_are_not_found_without_a_query,
    text_holding_nul_is_refused_and_changes_nothing,
);

/// PostgreSQL cannot store NUL in text: a query with one fails. Every id
/// that holds one must be answered as the unknown id it is, on every route.
async fn ids_holding_nul_are_not_found_without_a_query(app: TestApp) {
    let alice = app.as_user("alice");
    alice
        .post_json("/api/v1/orders/%00/cancel", &json!({}))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "order_not_found");
    alice
        .get("/api/v1/orders/a%00b")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "order_not_found");
    alice
        .get("/getOrderInfo?orderId=%00")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "order_not_found");
    alice
        .get("/api/v1/payments/%00")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "payment_not_found");
    alice
        .post_json(
            "/api/v1/payments",
            &json!({"orderId": "\u{0}", "paymentMethod": "alipay"}),
        )
        .await
        .assert_problem(StatusCode::NOT_FOUND, "order_not_found");
    app.get("/getProductInfo?productId=%00")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "product_not_found");
    let order = alice
        .post_json(
            "/api/v1/orders",
            &json!({"items": [{"productId": "p\u{0}", "quantity": 1}]}),
        )
        .await;
    assert!(
        order.status == StatusCode::NOT_FOUND || order.status == StatusCode::UNPROCESSABLE_ENTITY,
        "{} {}",
        order.status,
        order.body
    );
    assert_eq!(
        alice.get("/api/v1/orders").await.json["items"],
        json!([]),
        "nothing was ordered"
    );
}

async fn text_holding_nul_is_refused_and_changes_nothing(app: TestApp) {
    for (field, value) in [("name", "Lamp\u{0}"), ("description", "warm\u{0}white")] {
        let mut product = json!({"name": "Lamp", "description": "warm", "price": 100, "currency": "CNY", "stock": 1});
        product[field] = json!(value);
        let refused = app
            .admin_send(Method::POST, "/api/v1/products", &product)
            .await;
        refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(refused.problem_fields(), vec![field.to_owned()]);
    }
    assert_eq!(app.get("/api/v1/products").await.json["items"], json!([]));
}

/// Reads what the server sends until it closes the connection or `within` passes.
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let deadline = Instant::now() + within;
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline {
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        match stream.read(&mut buffer) {
            Ok(0) => return (String::from_utf8_lossy(&received).into_owned(), true),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            // A reset is a close too.
            Err(_) => return (String::from_utf8_lossy(&received).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&received).into_owned(), false)
}

/// Reads what the server sent so far, without waiting; and whether it closed the connection.
fn read_available(stream: &mut TcpStream) -> (String, bool) {
    stream.set_nonblocking(true).unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let closed = loop {
        match stream.read(&mut buffer) {
            Ok(0) => break true,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A reset is a close too.
            Err(_) => break true,
        }
    };
    stream.set_nonblocking(false).unwrap();
    (String::from_utf8_lossy(&received).into_owned(), closed)
}

fn connect(address: &str) -> TcpStream {
    TcpStream::connect(address.trim_start_matches("http://")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_gets_408_and_its_connection_closed() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[("SHOP__SERVER__REQUEST_TIMEOUT_MS", "500")],
    )
    .await;
    let address = app.address.clone();
    let (answer, closed, took) = tokio::task::spawn_blocking(move || {
        let mut stream = connect(&address);
        let body = br#"{"name": "Lamp", "price": 100, "currency": "CNY", "stock": 1}"#;
        write!(
            stream,
            "POST /api/v1/products HTTP/1.1\r\nHost: shop\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        let started = Instant::now();
        // One byte, then nothing more: the head arrived, the body never will.
        stream.write_all(&body[..1]).unwrap();
        let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(10));
        (answer, closed, started.elapsed())
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("application/problem+json")
            && answer.contains("\"code\":\"request_timeout\""),
        "{answer}"
    );
    assert!(closed, "the connection is closed after the 408");
    assert!(
        took >= Duration::from_millis(450),
        "cut off before its time: {took:?}"
    );
    // Read from the database: this app's own 500 ms deadline is not for a busy test machine.
    assert_eq!(
        shop_tests::count(&app.database_url, "SELECT COUNT(*) AS n FROM products"),
        0,
        "nothing was created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_that_does_not_arrive_in_time_is_cut_off() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[("SHOP__SERVER__REQUEST_TIMEOUT_MS", "500")],
    )
    .await;
    let address = app.address.clone();
    let (answer, closed) = tokio::task::spawn_blocking(move || {
        let mut stream = connect(&address);
        stream
            .write_all(b"GET /health/live HTTP/1.1\r\nHost: shop\r\n")
            .unwrap();
        // Well before actix's own default of 5 s.
        read_until_closed(&mut stream, Duration::from_secs(3))
    })
    .await
    .unwrap();
    assert!(closed, "the connection is closed");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}

/// The TCP connections a process holds (its sockets but the listener's are few and fixed).
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |fds| {
        fds.filter_map(Result::ok)
            .filter(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
            })
            .count()
    })
}

/// One address opening connections that never finish a request holds at
/// most its share: the connections past it are answered 429 and closed at
/// once, and another client is answered while the slow ones are still held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_every_connection() {
    let database = TestDatabase::create(Backend::Sqlite);
    let shop = ShopProcess::start(
        SHOP,
        &database.url(),
        &[
            ("SHOP__SERVER__MAX_CONNECTIONS", "64"),
            ("SHOP__SERVER__MAX_CONNECTIONS_PER_CLIENT", "16"),
            // Longer than the test: the slow clients are never cut off by time here.
            ("SHOP__SERVER__REQUEST_TIMEOUT_MS", "120000"),
        ],
    );
    let baseline = open_sockets(shop.pid());
    let address = shop.address.clone();
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut stream = connect(&address);
            // Sent into the socket buffer whether or not the server accepted yet.
            let _ = stream.write_all(
                b"POST /api/v1/payments/notify HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
            );
            stream
        })
        .collect();
    wait_until(
        "the slow address holds its share",
        Duration::from_secs(20),
        || async { open_sockets(shop.pid()) >= baseline + 16 },
    )
    .await;
    // Another client, from another loopback address.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let live = other
        .get(format!("{}/health/live", shop.address))
        .send()
        .await
        .expect("another client is answered");
    assert_eq!(live.status(), StatusCode::OK);
    // Every connection past the 16 is refused once the server accepts it,
    // whenever that is on a busy machine: the connections are read until 184
    // were refused (or 30 s passed), then once more after a pause, in which a
    // held one would have been answered or closed had the server done so.
    let outcomes = tokio::task::spawn_blocking(move || {
        let mut outcomes = vec![(String::new(), false); slow.len()];
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut sweep = |outcomes: &mut Vec<(String, bool)>| {
            for (stream, (answer, closed)) in slow.iter_mut().zip(outcomes.iter_mut()) {
                if !*closed {
                    let (more, now_closed) = read_available(stream);
                    answer.push_str(&more);
                    *closed = now_closed;
                }
            }
        };
        loop {
            sweep(&mut outcomes);
            let closed = outcomes.iter().filter(|(_, closed)| *closed).count();
            if closed >= 200 - 16 || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        sweep(&mut outcomes);
        outcomes
    })
    .await
    .unwrap();
    let is_refused = |(answer, closed): &&(String, bool)| {
        *closed && answer.starts_with("HTTP/1.1 429") && answer.contains("too_many_connections")
    };
    let is_waiting = |(answer, closed): &&(String, bool)| !*closed && answer.is_empty();
    let refused = outcomes.iter().filter(is_refused).count();
    let waiting = outcomes.iter().filter(is_waiting).count();
    let other: Vec<_> = outcomes
        .iter()
        .filter(|outcome| !is_refused(outcome) && !is_waiting(outcome))
        .collect();
    assert_eq!(
        (refused, waiting),
        (200 - 16, 16),
        "every connection past the limit was refused and closed; the address's 16 are still held; \
         neither: {other:?}"
    );
    // What the server still holds: the slow address's 16 and the other client's one.
    wait_until(
        "the refused connections are closed",
        Duration::from_secs(10),
        || async { open_sockets(shop.pid()) <= baseline + 16 + 1 },
    )
    .await;
}

/// Malformed requests are answered 400/431 and counted, but are the
/// client's doing: none of them writes an error line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http_is_refused_without_an_error_line() {
    let database = TestDatabase::create(Backend::Sqlite);
    let shop = ShopProcess::start(SHOP, &database.url(), &[]);
    let mut many_headers = String::from("GET /health/live HTTP/1.1\r\nHost: shop\r\n");
    for i in 0..1000 {
        many_headers.push_str(&format!("X-Header-{i}: v\r\n"));
    }
    many_headers.push_str("\r\n");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("a NUL in the path", b"GET /api/v1/products/\0 HTTP/1.1\r\nHost: shop\r\n\r\n".to_vec(), "400"),
        (
            "a 100 KB URI",
            format!("GET /{} HTTP/1.1\r\nHost: shop\r\n\r\n", "a".repeat(100_000)).into_bytes(),
            "400",
        ),
        (
            "two Content-Length headers",
            b"POST /api/v1/products HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_vec(),
            "400",
        ),
        ("a thousand headers", many_headers.into_bytes(), "431"),
    ];
    let address = shop.address.clone();
    for (case, request, status) in cases {
        let address = address.clone();
        let (answer, _) = tokio::task::spawn_blocking(move || {
            let mut stream = connect(&address);
            let _ = stream.write_all(&request);
            read_until_closed(&mut stream, Duration::from_secs(5))
        })
        .await
        .unwrap();
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{case}: {answer}"
        );
    }
    let client = reqwest::Client::new();
    wait_until("the four are counted", Duration::from_secs(5), || async {
        let metrics = client
            .get(format!("{}/metrics", shop.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        shop_tests::parse_metrics(&metrics)
            .get("shop_http_connection_errors_total")
            .is_some_and(|n| *n >= 4.0)
    })
    .await;
    let errors: Vec<String> = shop
        .log()
        .into_iter()
        .filter(|line| line.contains("\"level\":\"ERROR\""))
        .collect();
    assert!(errors.is_empty(), "error lines: {errors:#?}");
}

/// A body that is not what its `Content-Encoding` says is the client's
/// mistake, told in the client's words, on JSON routes and raw-body routes alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_body_is_told_without_internals() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for path in ["/api/v1/products", "/api/v1/payments/notify"] {
        for body in [&b"not gzip at all"[..], &[0x1f, 0x8b, 0x08, 0x00, 0x00][..]] {
            let request = app
                .client
                .post(app.url(path))
                .bearer_auth(ADMIN_TOKEN)
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(body.to_vec());
            let response = app.send(request).await;
            response.assert_problem(StatusCode::BAD_REQUEST, "unreadable_body");
            let detail = response.json["detail"].as_str().unwrap_or_default();
            assert!(
                detail.contains("Content-Encoding")
                    && !detail.contains("Some(")
                    && !detail.contains("kind:"),
                "{path}: {detail}"
            );
        }
    }
    assert_eq!(app.get("/api/v1/products").await.json["items"], json!([]));
}

/// Behind a trusted proxy (`SHOP__SERVER__TRUSTED_PROXIES`) every
/// connection comes from the proxy: those are not counted against one
/// address, and the limit applies to each forwarded client instead, as
/// requests in flight (each one a connection the proxy holds for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_client_holds_its_own_share() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("SHOP__SERVER__TRUSTED_PROXIES", "127.0.0.1"),
            ("SHOP__SERVER__MAX_CONNECTIONS_PER_CLIENT", "2"),
            ("SHOP__SERVER__REQUEST_TIMEOUT_MS", "120000"),
        ],
    )
    .await;
    // Requests whose bodies never finish, as the proxy forwards them.
    let slow = |client: Option<&str>| {
        let mut stream = connect(&app.address);
        let forwarded = client.map_or(String::new(), |c| format!("X-Forwarded-For: {c}\r\n"));
        stream
            .write_all(
                format!(
                    "POST /api/v1/payments/notify HTTP/1.1\r\nHost: shop\r\n{forwarded}Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
                )
                .as_bytes(),
            )
            .unwrap();
        stream
    };
    let mut streams: Vec<(&str, TcpStream)> = Vec::new();
    for client in [
        "198.51.100.1",
        "198.51.100.1",
        "198.51.100.1",
        "198.51.100.2",
    ] {
        streams.push((client, slow(Some(client))));
    }
    for _ in 0..3 {
        streams.push(("the proxy", slow(None)));
    }
    let outcomes = tokio::task::spawn_blocking(move || {
        streams
            .iter_mut()
            .map(|(client, stream)| {
                (
                    *client,
                    read_until_closed(stream, Duration::from_millis(500)).0,
                )
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let refused: Vec<&str> = outcomes
        .iter()
        .filter(|(_, answer)| {
            answer.starts_with("HTTP/1.1 429") && answer.contains("too_many_connections")
        })
        .map(|(client, _)| *client)
        .collect();
    let held = outcomes
        .iter()
        .filter(|(_, answer)| answer.is_empty())
        .count();
    assert_eq!(
        (refused, held),
        (vec!["198.51.100.1"], 6),
        "only the client past its share was refused: {outcomes:?}"
    );
}
