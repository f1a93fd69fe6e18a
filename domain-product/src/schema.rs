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
    }
}
