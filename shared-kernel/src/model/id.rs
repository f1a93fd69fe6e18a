//! Identifiers. Ids are generated in Rust as UUIDv7 (time-ordered, so that
//! "order by id" is also "order by creation"), stored and shown as strings.
//! Because no insert needs the database to hand back a generated key, the
//! same insert works on every backend (MySQL has no `RETURNING`).

/// Declares a string-backed identifier newtype.
///
/// Any string can name an entity when it is looked up (an id that names
/// nothing is a 404, whatever its shape); only [`generate`](Self::generate)
/// makes new ones.
#[macro_export]
macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new, unique, time-ordered id.
            pub fn generate() -> Self {
                Self($crate::__private::Uuid::now_v7().to_string())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Whether this string could name a stored id at all. Ids are short
            /// and never hold NUL (which PostgreSQL text cannot store), so a
            /// lookup of anything else is answered "not found" without a query.
            pub fn could_exist(&self) -> bool {
                !self.0.is_empty() && self.0.len() <= 64 && !self.0.contains('\0')
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// The smallest id [`string_id!`]'s `generate` could have made at `at`
/// (UTC): a UUIDv7 begins with its Unix time in milliseconds, so ids made
/// at or after `at` are at or above it, as text too (lowercase hex, fixed
/// width). A time before 1970 gives the smallest id of all.
pub fn uuid_v7_floor(at: chrono::NaiveDateTime) -> String {
    let ms = u64::try_from(at.and_utc().timestamp_millis())
        .unwrap_or(0)
        .min((1 << 48) - 1);
    format!(
        "{:08x}-{:04x}-0000-0000-000000000000",
        ms >> 16,
        ms & 0xffff
    )
}

#[cfg(test)]
mod tests {
    use super::uuid_v7_floor;

    #[test]
    fn the_floor_of_a_time_sorts_below_its_ids_and_above_earlier_ones() {
        let now = chrono::Utc::now().naive_utc();
        let id = uuid::Uuid::now_v7().to_string();
        let before = now - chrono::Duration::milliseconds(5);
        let after = chrono::Utc::now().naive_utc() + chrono::Duration::milliseconds(5);
        assert!(
            uuid_v7_floor(before) <= id,
            "{} {id}",
            uuid_v7_floor(before)
        );
        assert!(uuid_v7_floor(after) > id, "{} {id}", uuid_v7_floor(after));
        assert_eq!(
            uuid_v7_floor(chrono::DateTime::UNIX_EPOCH.naive_utc() - chrono::Duration::days(1)),
            "00000000-0000-0000-0000-000000000000"
        );
    }
}
