//! The message broker of the tests: the RabbitMQ named by
//! `SHOP_TEST_RABBITMQ_URL` (this machine's, `amqp://guest:guest@127.0.0.1:5672/%2f`).
//! Each test takes an exchange of its own ([`fresh_exchange`]), so that tests
//! (and CI runs) share the broker without meeting, and removes it after.

use std::sync::{Arc, Mutex};

use lapin::options::{
    BasicPublishOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::task::JoinHandle;

/// The broker's URL.
pub fn url() -> String {
    std::env::var("SHOP_TEST_RABBITMQ_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// The broker's URL with its address replaced by `127.0.0.1:port` (a [`TcpProxy`]'s).
pub fn url_via(port: u16) -> String {
    let mut url = reqwest::Url::parse(&url()).expect("SHOP_TEST_RABBITMQ_URL is a URL");
    url.set_host(Some("127.0.0.1")).expect("host");
    url.set_port(Some(port)).expect("port");
    url.to_string()
}

/// The broker's `host:port`.
pub fn address() -> String {
    let url = reqwest::Url::parse(&url()).expect("SHOP_TEST_RABBITMQ_URL is a URL");
    format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5672)
    )
}

/// An exchange name no other test uses.
pub fn fresh_exchange() -> String {
    format!("shop-test.{}", uuid::Uuid::now_v7().simple())
}

/// The settings that make an app or process carry its events over the broker, on `exchange`.
pub fn settings(exchange: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SHOP__BUS__KIND", "rabbitmq".to_owned()),
        ("SHOP__BUS__RABBITMQ_URL", url()),
        ("SHOP__BUS__EXCHANGE", exchange.to_owned()),
    ]
}

/// A connection of the test's own, to look at queues and to publish.
pub struct Broker {
    connection: Connection,
    channel: Channel,
}

impl Broker {
    pub async fn connect() -> Self {
        Self::connect_to(&url())
            .await
            .expect("the test broker (SHOP_TEST_RABBITMQ_URL) is reachable")
    }

    /// A connection to the broker at `url` (the load driver's, which has its own setting).
    pub async fn connect_to(url: &str) -> lapin::Result<Self> {
        let connection = Connection::connect(url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        Ok(Self {
            connection,
            channel,
        })
    }

    /// Messages ready in `queue` (not those a consumer holds); `None` while
    /// the queue does not exist. (Asking of a missing queue closes the channel
    /// it was asked on, so each question takes a channel of its own.)
    pub async fn ready(&self, queue: &str) -> Option<u32> {
        let channel = self.connection.create_channel().await.expect("channel");
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .ok()?;
        let _ = channel.close(200, "done".into()).await;
        Some(declared.message_count())
    }

    /// Publishes raw bytes, as anything else on the broker could.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) {
        self.channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .expect("published");
    }

    /// Declares `queue` (a classic one, with `arguments`) and binds it to
    /// `exchange` for `routing_key`: a queue of the test's own beside shop's.
    /// Name it `<exchange>.test`, so that [`remove`](Self::remove) removes it.
    pub async fn bind_queue(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: FieldTable,
    ) {
        self.channel
            .queue_declare(queue.into(), QueueDeclareOptions::default(), arguments)
            .await
            .expect("queue declared");
        self.channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                routing_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("queue bound");
    }

    /// Deletes one queue.
    pub async fn delete_queue(&self, queue: &str) {
        self.channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
            .expect("queue deleted");
    }

    /// Deletes the exchange's queues and exchanges.
    pub async fn remove(&self, exchange: &str) {
        for suffix in ["product", "order", "payment", "test", "dead-letter"] {
            let _ = self
                .channel
                .queue_delete(
                    format!("{exchange}.{suffix}").as_str().into(),
                    QueueDeleteOptions::default(),
                )
                .await;
        }
        for name in [exchange.to_owned(), format!("{exchange}.dead-letter")] {
            let _ = self
                .channel
                .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
}

/// A TCP proxy on loopback to `target`, which a test cuts (closing every
/// connection and refusing new ones) and resumes on the same port: the
/// broker "goes away" for the process behind it only. It can also hold back
/// what the target sends ([`hold_replies`](Self::hold_replies)) while passing
/// on what the process sends: a publication reaches the broker, its confirm
/// does not come back.
pub struct TcpProxy {
    port: u16,
    target: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// Whether the target's bytes are held back (every connection's).
    holding: tokio::sync::watch::Sender<bool>,
    /// Whether new connections go silent once the AMQP handshake is through.
    silent_after_handshake: Arc<std::sync::atomic::AtomicBool>,
}

impl TcpProxy {
    pub async fn start(target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let proxy = Self {
            port,
            target: target.to_owned(),
            tasks: Arc::default(),
            holding: tokio::sync::watch::Sender::new(false),
            silent_after_handshake: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let target = self.target.clone();
        let tasks = self.tasks.clone();
        let holding = self.holding.clone();
        let silent = self.silent_after_handshake.clone();
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let target = target.clone();
                let held = holding.subscribe();
                let silent = silent.load(std::sync::atomic::Ordering::SeqCst);
                let connection = tokio::spawn(async move {
                    if let Ok(outbound) = tokio::net::TcpStream::connect(&target).await {
                        let (from_client, to_client) = inbound.into_split();
                        let (from_target, to_target) = outbound.into_split();
                        // Either way closing closes the connection.
                        if silent {
                            tokio::select! {
                                () = pipe(from_client, to_target, None) => {}
                                () = handshake_then_silence(from_target, to_client) => {}
                            }
                        } else {
                            tokio::select! {
                                () = pipe(from_client, to_target, None) => {}
                                () = pipe(from_target, to_client, Some(held)) => {}
                            }
                        }
                    }
                });
                if let Ok(mut tasks) = tasks.lock() {
                    tasks.push(connection);
                }
            }
        });
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.push(accept);
        }
    }

    /// Closes every connection and stops listening.
    pub fn cut(&self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            for task in tasks.drain(..) {
                task.abort();
            }
        }
    }

    /// Listens again, on the same port.
    pub async fn resume(&self) {
        let address = format!("127.0.0.1:{}", self.port);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(&address).await {
                Ok(listener) => break listener,
                Err(error) if std::time::Instant::now() < deadline => {
                    let _ = error;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(error) => panic!("cannot listen on {address} again: {error}"),
            }
        };
        self.serve(listener);
    }

    /// From now on, what the target sends is held back (not read), on every
    /// connection; what the process sends still goes through.
    pub fn hold_replies(&self) {
        self.holding.send_replace(true);
    }

    /// Passes on what the target sent meanwhile, and what it sends next.
    pub fn release_replies(&self) {
        self.holding.send_replace(false);
    }

    /// Connections opened from now on pass the broker's AMQP handshake
    /// (Connection.Start, .Tune, .OpenOk: the connection opens) and then
    /// nothing more from the broker, for as long as they last: a broker that
    /// accepted a connection and went silent. `false`: new ones pass all.
    pub fn silent_after_handshake(&self, silent: bool) {
        self.silent_after_handshake
            .store(silent, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Passes the target's first three AMQP frames (the handshake's
/// Connection.Start, Connection.Tune and Connection.OpenOk), then reads
/// and drops nothing more: the connection stays open, silent.
async fn handshake_then_silence(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for _ in 0..3 {
        // A frame: type (1), channel (2), size (4), payload, frame-end (0xCE).
        let mut header = [0u8; 7];
        if from.read_exact(&mut header).await.is_err() {
            return;
        }
        let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
        let mut rest = vec![0u8; size + 1];
        if from.read_exact(&mut rest).await.is_err() {
            return;
        }
        if to.write_all(&header).await.is_err() || to.write_all(&rest).await.is_err() {
            return;
        }
    }
    std::future::pending::<()>().await;
}

/// Copies `from` to `to` until either closes; while `held` says so, reads nothing.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut held: Option<tokio::sync::watch::Receiver<bool>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        if let Some(held) = held.as_mut() {
            if held.wait_for(|holding| !holding).await.is_err() {
                return;
            }
            tokio::select! {
                read = from.read(&mut buffer) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if to.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                    }
                },
                // Held from now on: the read is dropped before it took anything.
                changed = held.changed() => if changed.is_err() {
                    return;
                },
            }
        } else {
            match from.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if to.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}
