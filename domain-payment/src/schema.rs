diesel::table! {
    payments (id) {
        id -> Text,
        order_id -> Text,
        method -> Text,
        gateway -> Text,
        status -> Text,
        amount_minor -> BigInt,
        currency -> Text,
        payment_url -> Text,
        expires_at -> Timestamp,
        transaction_id -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        completed_at -> Nullable<Timestamp>,
        user_id -> Text,
        provider_due_at -> Nullable<Timestamp>,
        provider_attempts -> Integer,
    }
}

diesel::table! {
    payment_notifications (digest) {
        digest -> Text,
        payment_id -> Text,
        signed_at -> BigInt,
        received_at -> Timestamp,
    }
}
