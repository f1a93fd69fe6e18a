//! The id of the HTTP request being served, carried into everything it
//! causes: its database work (on the blocking pool), the events it publishes,
//! and so the log lines of the handlers that process them.

use std::cell::RefCell;
use std::future::Future;

tokio::task_local! {
    static CURRENT: String;
}

thread_local! {
    /// The request id of the database work running on this blocking thread.
    static BLOCKING: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `future` as part of request `id`.
pub fn scope<F: Future>(id: String, future: F) -> impl Future<Output = F::Output> {
    CURRENT.scope(id, future)
}

/// The current request's id, on the async side or in its blocking work.
pub fn current() -> Option<String> {
    CURRENT
        .try_with(Clone::clone)
        .ok()
        .or_else(|| BLOCKING.with(|cell| cell.borrow().clone()))
}

/// Runs blocking `work` as part of request `id` (see [`current`]).
pub fn in_blocking<T>(id: Option<String>, work: impl FnOnce() -> T) -> T {
    let previous = BLOCKING.with(|cell| cell.replace(id));
    let result = work();
    BLOCKING.with(|cell| *cell.borrow_mut() = previous);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_id_follows_the_request_into_blocking_work() {
        assert_eq!(current(), None);
        let seen = scope("req-1".into(), async {
            let id = current();
            tokio::task::spawn_blocking(move || in_blocking(id, current))
                .await
                .unwrap()
        })
        .await;
        assert_eq!(seen.as_deref(), Some("req-1"));
        assert_eq!(current(), None);
    }
}
