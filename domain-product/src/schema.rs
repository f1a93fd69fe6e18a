diesel::table! {
    products (id) {
        id -> Text,
        name -> Text,
        description -> Text,
        price_minor -> BigInt,
        currency -> Text,
        stock -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        status -> Text,
        low_stock_threshold -> Nullable<BigInt>,
        name_folded -> Text,
    }
}

diesel::table! {
    stock_movements (id) {
        id -> Text,
        product_id -> Text,
        actor -> Text,
        reason -> Text,
        note -> Nullable<Text>,
        delta -> BigInt,
        stock_after -> BigInt,
        request_id -> Nullable<Text>,
        occurred_at -> Timestamp,
    }
}

diesel::table! {
    stock_reservations (id) {
        id -> Text,
        status -> Text,
        hold_until -> Timestamp,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    stock_reservation_lines (reservation_id, product_id) {
        reservation_id -> Text,
        product_id -> Text,
        quantity -> BigInt,
        unit_price_minor -> BigInt,
        currency -> Text,
    }
}

diesel::joinable!(stock_reservation_lines -> stock_reservations (reservation_id));
diesel::joinable!(stock_reservation_lines -> products (product_id));
diesel::allow_tables_to_appear_in_same_query!(
    products,
    stock_movements,
    stock_reservations,
    stock_reservation_lines
);

// MySQL only (migration product_cache_notify there): ids of changed products,
// appended by triggers, polled by every instance's cache invalidator.
diesel::table! {
    product_changes (id) {
        id -> BigInt,
        product_id -> Text,
        changed_at -> Timestamp,
    }
}
