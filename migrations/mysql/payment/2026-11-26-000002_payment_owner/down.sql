ALTER TABLE payments DROP COLUMN user_id;
