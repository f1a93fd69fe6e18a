-- Each payment notification shop accepted (applied, or answered as a
-- duplicate), by the SHA-256 of what its signature covers ("<t>.<raw body>"),
-- and the payment it was about. The same signed bytes are accepted at most
-- once: a replay inside the signature's five-minute tolerance finds its row
-- here and changes nothing. Rows whose signature can no longer verify are
-- pruned (the payment context's retention job), so the table stays small.
CREATE TABLE payment_notifications (
    digest      VARCHAR(255) NOT NULL PRIMARY KEY,   -- hex SHA-256 of "<t>.<raw body>"
    payment_id  VARCHAR(255) NOT NULL,
    signed_at   BIGINT       NOT NULL,               -- the signature's t, unix seconds
    received_at DATETIME(6)  NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE INDEX payment_notifications_signed_at ON payment_notifications (signed_at);
