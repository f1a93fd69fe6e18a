DROP INDEX order_lines_product ON order_lines;
DROP INDEX orders_created ON orders;
DROP INDEX orders_status ON orders;
