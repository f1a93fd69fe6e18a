//! Messaging: the transactional outbox and its dispatcher (in process), and
//! the RabbitMQ bus that carries events between processes.

pub mod outbox;
pub mod rabbitmq;
