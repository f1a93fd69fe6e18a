DROP TRIGGER products_notify ON products;
DROP FUNCTION shop_products_notify();
