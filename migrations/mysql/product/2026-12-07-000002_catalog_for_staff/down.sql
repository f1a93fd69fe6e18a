DROP TABLE stock_movements;
DROP INDEX products_status_name ON products;
DROP INDEX products_status_price ON products;
DROP INDEX products_status_created ON products;
ALTER TABLE products DROP CONSTRAINT products_low_stock_threshold_check, DROP CONSTRAINT products_status_check,
    DROP COLUMN name_folded, DROP COLUMN low_stock_threshold, DROP COLUMN status;
