DROP TABLE stock_movements;
DROP INDEX products_status_name;
DROP INDEX products_status_price;
DROP INDEX products_status_created;
ALTER TABLE products DROP COLUMN name_folded;
ALTER TABLE products DROP COLUMN low_stock_threshold;
ALTER TABLE products DROP COLUMN status;
