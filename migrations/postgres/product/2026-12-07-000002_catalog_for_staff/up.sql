-- Product context: what staff run the catalog with.
-- A product is `active` (on sale) or `archived` (off sale: still read by id,
-- never reserved). `low_stock_threshold`: below it, `product.stock_low` is
-- emitted once when stock falls under it (none: never). `name_folded` is the
-- name lower-cased by the application (Unicode case folding, the same on
-- every backend), which `listProducts?q=` and `sort=name` read.
ALTER TABLE products ADD COLUMN status TEXT NOT NULL DEFAULT 'active'
    CHECK (status IN ('active', 'archived'));
ALTER TABLE products ADD COLUMN low_stock_threshold BIGINT CHECK (low_stock_threshold >= 0);
ALTER TABLE products ADD COLUMN name_folded TEXT NOT NULL DEFAULT '';
UPDATE products SET name_folded = LOWER(name);
CREATE INDEX products_status_created ON products (status, created_at, id);
CREATE INDEX products_status_price ON products (status, price_minor, id);
CREATE INDEX products_status_name ON products (status, name_folded, id);

-- Every staff change of stock (a set or an adjustment), newest last by id.
CREATE TABLE stock_movements (
    id          TEXT      NOT NULL PRIMARY KEY,   -- UUIDv7
    product_id  TEXT      NOT NULL REFERENCES products (id),
    actor       TEXT      NOT NULL,
    reason      TEXT      NOT NULL,               -- `set`, or an adjustment's reason
    note        TEXT,
    delta       BIGINT    NOT NULL,
    stock_after BIGINT    NOT NULL,
    request_id  TEXT,
    occurred_at TIMESTAMP NOT NULL                -- UTC
);
CREATE INDEX stock_movements_product ON stock_movements (product_id, id);
