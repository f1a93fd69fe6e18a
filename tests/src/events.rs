//! A test event and a subscriber that records it, for the tests of the
//! event bus itself (routing, the broker) rather than of shop's own events.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use shared_kernel::messaging::outbox::EventHandler;
use shared_kernel::model::events::{EventEnvelope, IntegrationEvent};
use shared_kernel::storage::db::AnyConnection;

/// `test.pinged`, numbered.
#[derive(Debug, Serialize, Deserialize)]
pub struct Pinged {
    pub n: u32,
}

impl IntegrationEvent for Pinged {
    const TYPE: &'static str = "test.pinged";
    const VERSION: u16 = 1;
}

/// Remembers the `n` of every event it handled.
#[derive(Default)]
pub struct Recorder(Mutex<Vec<u64>>);

impl EventHandler for Recorder {
    fn handle(&self, _conn: &mut AnyConnection, event: &EventEnvelope) -> anyhow::Result<()> {
        let n = event.payload["n"].as_u64().unwrap_or(u64::MAX);
        self.0
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .push(n);
        Ok(())
    }
}

impl Recorder {
    /// The `n`s handled, in ascending order (a repeat shows twice).
    pub fn seen(&self) -> Vec<u64> {
        let mut seen = self.0.lock().map(|v| v.clone()).unwrap_or_default();
        seen.sort_unstable();
        seen
    }
}
