-- Product context: every instance caches products read by id, and forgets
-- one when its row changes. Each committed update or delete of a product
-- notifies channel shop_products with its id (PostgreSQL delivers a
-- notification only if its transaction commits, once per distinct id), so
-- that every path that writes products, present or future, and a person at
-- a SQL prompt, invalidates every instance's cache. Inserts need no
-- notification: an unknown id is never cached.
CREATE FUNCTION shop_products_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('shop_products', OLD.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER products_notify
    AFTER UPDATE OR DELETE ON products
    FOR EACH ROW EXECUTE FUNCTION shop_products_notify();
