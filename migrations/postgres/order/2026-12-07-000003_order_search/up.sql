-- Order context: staff search orders newest first (by id, time-ordered),
-- by status, by product and by creation time; each filter has an index
-- whose order ends with the id, so a page is a bounded index read.
CREATE INDEX orders_status ON orders (status, id);
CREATE INDEX orders_created ON orders (created_at, id);
CREATE INDEX order_lines_product ON order_lines (product_id, order_id);
