-- Product context: every instance caches products read by id, and forgets
-- one when its row changes. MySQL has no LISTEN/NOTIFY: each update or
-- delete of a product appends its id here (in the writer's transaction, so
-- the row is seen only if, and once, it commits), and every instance polls
-- this table for ids it has not seen (domain-product's cache invalidator,
-- which also watches the gaps that transactions still open leave in the
-- ids, and prunes rows older than ten minutes). Inserts need no entry: an
-- unknown id is never cached.
CREATE TABLE product_changes (
    id         BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    product_id VARCHAR(255) NOT NULL,
    changed_at DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE INDEX product_changes_changed_at ON product_changes (changed_at);

CREATE TRIGGER products_changed_on_update AFTER UPDATE ON products
    FOR EACH ROW INSERT INTO product_changes (product_id) VALUES (OLD.id);

CREATE TRIGGER products_changed_on_delete AFTER DELETE ON products
    FOR EACH ROW INSERT INTO product_changes (product_id) VALUES (OLD.id);
