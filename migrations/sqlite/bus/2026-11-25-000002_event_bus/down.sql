DROP TABLE event_deliveries;
DROP TABLE outbox_events;
