DROP INDEX order_lines_product;
DROP INDEX orders_created;
DROP INDEX orders_status;
