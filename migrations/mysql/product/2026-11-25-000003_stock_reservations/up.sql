-- Product context: stock held for orders. The reservation id is the order id.
-- held -> confirmed (OrderPlaced) -> sold (OrderPaid); held/confirmed -> released.
CREATE TABLE stock_reservations (
    id         VARCHAR(255) NOT NULL PRIMARY KEY,
    status     VARCHAR(32)  NOT NULL,
    hold_until DATETIME(6)  NOT NULL,
    created_at DATETIME(6)  NOT NULL,
    updated_at DATETIME(6)  NOT NULL,
    CONSTRAINT stock_reservations_status_check CHECK (status IN ('held', 'confirmed', 'sold', 'released'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- PostgreSQL's partial index (WHERE status = 'held') as a composite one.
CREATE INDEX stock_reservations_held ON stock_reservations (status, hold_until);

CREATE TABLE stock_reservation_lines (
    reservation_id   VARCHAR(255) NOT NULL,
    product_id       VARCHAR(255) NOT NULL,
    quantity         BIGINT       NOT NULL,
    unit_price_minor BIGINT       NOT NULL,
    currency         VARCHAR(3)   NOT NULL,
    PRIMARY KEY (reservation_id, product_id),
    CONSTRAINT stock_reservation_lines_reservation_id_fkey FOREIGN KEY (reservation_id) REFERENCES stock_reservations (id),
    CONSTRAINT stock_reservation_lines_product_id_fkey FOREIGN KEY (product_id) REFERENCES products (id),
    CONSTRAINT stock_reservation_lines_quantity_check CHECK (quantity > 0),
    CONSTRAINT stock_reservation_lines_unit_price_minor_check CHECK (unit_price_minor >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE INDEX stock_reservation_lines_product ON stock_reservation_lines (product_id);
