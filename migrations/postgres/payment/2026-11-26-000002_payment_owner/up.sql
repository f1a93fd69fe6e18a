-- The customer a payment belongs to (the user id of the token that opened
-- it), copied from its order when the payment is opened, so that reading a
-- payment needs no call to the order context. Payments opened before
-- customer identity existed belong to nobody: only the admin token sees them.
ALTER TABLE payments ADD COLUMN user_id TEXT NOT NULL DEFAULT '';
