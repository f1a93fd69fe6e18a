DROP TABLE event_inbox;
