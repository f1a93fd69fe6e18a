DROP TABLE stock_reservation_lines;
DROP TABLE stock_reservations;
