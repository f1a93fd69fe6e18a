DROP TRIGGER products_changed_on_delete;
DROP TRIGGER products_changed_on_update;
DROP TABLE product_changes;
