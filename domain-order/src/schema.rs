diesel::table! {
    orders (id) {
        id -> Text,
        user_id -> Text,
        status -> Text,
        cancel_reason -> Nullable<Text>,
        amount_minor -> BigInt,
        currency -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        expires_at -> Timestamp,
        paid_at -> Nullable<Timestamp>,
        cancelled_at -> Nullable<Timestamp>,
        payment_id -> Nullable<Text>,
    }
}

diesel::table! {
    order_lines (order_id, line_no) {
        order_id -> Text,
        line_no -> Integer,
        product_id -> Text,
        quantity -> BigInt,
        unit_price_minor -> BigInt,
    }
}

diesel::table! {
    order_idempotency_keys (user_id, idempotency_key) {
        user_id -> Text,
        idempotency_key -> Text,
        request -> Text,
        order_id -> Text,
        created_at -> Timestamp,
    }
}

diesel::joinable!(order_lines -> orders (order_id));
diesel::allow_tables_to_appear_in_same_query!(orders, order_lines, order_idempotency_keys);
