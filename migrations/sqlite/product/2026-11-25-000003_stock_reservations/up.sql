-- Product context: stock held for orders. The reservation id is the order id.
-- held -> confirmed (OrderPlaced) -> sold (OrderPaid); held/confirmed -> released.
CREATE TABLE stock_reservations (
    id         TEXT      NOT NULL PRIMARY KEY,
    status     TEXT      NOT NULL CHECK (status IN ('held', 'confirmed', 'sold', 'released')),
    hold_until TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE INDEX stock_reservations_held ON stock_reservations (hold_until) WHERE status = 'held';

CREATE TABLE stock_reservation_lines (
    reservation_id   TEXT   NOT NULL REFERENCES stock_reservations (id),
    product_id       TEXT   NOT NULL REFERENCES products (id),
    quantity         BIGINT NOT NULL CHECK (quantity > 0),
    unit_price_minor BIGINT NOT NULL CHECK (unit_price_minor >= 0),
    currency         TEXT   NOT NULL,
    PRIMARY KEY (reservation_id, product_id)
);

CREATE INDEX stock_reservation_lines_product ON stock_reservation_lines (product_id);
