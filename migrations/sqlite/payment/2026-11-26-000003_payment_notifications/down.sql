DROP TABLE payment_notifications;
