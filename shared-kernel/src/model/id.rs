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
