-- Product context: what staff run the catalog with.
-- A product is `active` (on sale) or `archived` (off sale: still read by id,
-- never reserved). `low_stock_threshold`: below it, `product.stock_low` is
-- emitted once when stock falls under it (none: never). `name_folded` is the
-- name lower-cased by the application (Unicode case folding, the same on
-- every backend), which `listProducts?q=` and `sort=name` read.
ALTER TABLE products
    ADD COLUMN status VARCHAR(16) NOT NULL DEFAULT 'active',
    ADD COLUMN low_stock_threshold BIGINT,
    ADD COLUMN name_folded TEXT NOT NULL DEFAULT '',
    ADD CONSTRAINT products_status_check CHECK (status IN ('active', 'archived')),
    ADD CONSTRAINT products_low_stock_threshold_check CHECK (low_stock_threshold >= 0);
UPDATE products SET name_folded = LOWER(name);
CREATE INDEX products_status_created ON products (status, created_at, id);
CREATE INDEX products_status_price ON products (status, price_minor, id);
CREATE INDEX products_status_name ON products (status, name_folded(191), id);

-- Every staff change of stock (a set or an adjustment), newest last by id.
CREATE TABLE stock_movements (
    id          VARCHAR(255) NOT NULL PRIMARY KEY,   -- UUIDv7
    product_id  VARCHAR(255) NOT NULL,
    actor       VARCHAR(255) NOT NULL,
    reason      VARCHAR(32)  NOT NULL,               -- `set`, or an adjustment's reason
    note        TEXT,
    delta       BIGINT       NOT NULL,
    stock_after BIGINT       NOT NULL,
    request_id  VARCHAR(255),
    occurred_at DATETIME(6)  NOT NULL,               -- UTC
    INDEX stock_movements_product (product_id, id),
    CONSTRAINT stock_movements_product_fk FOREIGN KEY (product_id) REFERENCES products (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
