//! The audit log: who changed what, when, from what to what.
//!
//! Every staff write appends one [`AuditEntry`] with [`record`], on the
//! connection of the transaction that makes the change: the entry commits
//! with the change or not at all, so a write that fails records nothing.
//! Each process keeps the log of the contexts it runs in its own database
//! (the `audit_events` table, in every database like the outbox's); the log
//! is read newest first, filtered by actor, target or action ([`list`]), and
//! served by `listAuditEvents` ([`http`]).

pub mod http;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::Value;

use crate::model::clock;
use crate::storage::connection::AnyConnection;
use crate::web::auth::UserId;
use crate::web::pagination::PageRequest;

diesel::table! {
    audit_events (id) {
        id -> Text,
        occurred_at -> Timestamp,
        actor -> Text,
        action -> Text,
        target_type -> Text,
        target_id -> Text,
        before_state -> Nullable<Text>,
        after_state -> Nullable<Text>,
        request_id -> Nullable<Text>,
    }
}

/// The audit log's table, in every database whatever contexts it holds.
pub const MIGRATIONS: crate::storage::db::MigrationSet = crate::storage::db::MigrationSet {
    sqlite: &diesel_migrations::embed_migrations!("../migrations/sqlite/audit"),
    postgres: &diesel_migrations::embed_migrations!("../migrations/postgres/audit"),
    mysql: &diesel_migrations::embed_migrations!("../migrations/mysql/audit"),
};

/// Who made a staff write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The shared admin token (automation, first set-up).
    AdminToken,
    /// A member of staff, by their token's `sub`.
    Staff(UserId),
}

impl Actor {
    /// As the log records it: `admin-token`, or the staff token's `sub`
    /// (never `admin-token`: such a staff token is refused).
    pub fn as_str(&self) -> &str {
        match self {
            Self::AdminToken => crate::web::auth::ADMIN_TOKEN_ACTOR,
            Self::Staff(user) => user.as_str(),
        }
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<crate::web::auth::Admin> for Actor {
    /// The admin token, or the staff member whose JWT it is.
    fn from(admin: crate::web::auth::Admin) -> Self {
        match admin.member() {
            Some(user) => Self::Staff(user.clone()),
            None => Self::AdminToken,
        }
    }
}

/// One staff write, as the log keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// What was done, `<target type>.<verb>`: `product.created`.
    pub action: &'static str,
    pub target_type: &'static str,
    pub target_id: String,
    /// What changed, as it was (`None` for a creation).
    pub before: Option<Value>,
    /// What changed, as it became.
    pub after: Option<Value>,
}

/// Appends `entry`, done by `actor`, to the log, on the connection of the
/// transaction that makes the change (with the current request's id).
pub fn record(conn: &mut AnyConnection, actor: &Actor, entry: AuditEntry) -> QueryResult<()> {
    let json = |value: Option<Value>| value.map(|v| v.to_string());
    diesel::insert_into(audit_events::table)
        .values((
            audit_events::id.eq(uuid::Uuid::now_v7().to_string()),
            audit_events::occurred_at.eq(clock::now()),
            audit_events::actor.eq(actor.as_str()),
            audit_events::action.eq(entry.action),
            audit_events::target_type.eq(entry.target_type),
            audit_events::target_id.eq(&entry.target_id),
            audit_events::before_state.eq(json(entry.before)),
            audit_events::after_state.eq(json(entry.after)),
            audit_events::request_id.eq(crate::web::request_id::current()),
        ))
        .execute(conn)?;
    Ok(())
}

/// One recorded staff write.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub id: String,
    pub occurred_at: NaiveDateTime,
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub request_id: Option<String>,
}

/// Which entries to list: each filter given must match exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub target_id: Option<String>,
    pub action: Option<String>,
}

type Row = (
    String,
    NaiveDateTime,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// A page of entries matching `filter`, newest first (the cursor is the
/// last id seen: the next page holds older entries).
pub fn list(
    conn: &mut AnyConnection,
    filter: &AuditFilter,
    page: &PageRequest,
) -> QueryResult<(Vec<AuditEvent>, Option<String>)> {
    let mut query = audit_events::table
        .select((
            audit_events::id,
            audit_events::occurred_at,
            audit_events::actor,
            audit_events::action,
            audit_events::target_type,
            audit_events::target_id,
            audit_events::before_state,
            audit_events::after_state,
            audit_events::request_id,
        ))
        .order(audit_events::id.desc())
        .limit(page.fetch_size())
        .into_boxed();
    if let Some(actor) = &filter.actor {
        query = query.filter(audit_events::actor.eq(actor.clone()));
    }
    if let Some(target) = &filter.target_id {
        query = query.filter(audit_events::target_id.eq(target.clone()));
    }
    if let Some(action) = &filter.action {
        query = query.filter(audit_events::action.eq(action.clone()));
    }
    if let Some(after) = &page.after {
        query = query.filter(audit_events::id.lt(after.clone()));
    }
    let rows: Vec<Row> = query.load(conn)?;
    let events = rows.into_iter().map(into_event).collect();
    Ok(page.finish(events, |e| e.id.as_str()))
}

fn into_event(row: Row) -> AuditEvent {
    let (id, occurred_at, actor, action, target_type, target_id, before, after, request_id) = row;
    // The log writes only JSON here; a value that does not parse is shown as text.
    let json =
        |text: Option<String>| text.map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t)));
    AuditEvent {
        id,
        occurred_at,
        actor,
        action,
        target_type,
        target_id,
        before: json(before),
        after: json(after),
        request_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_token_is_its_own_actor() {
        assert_eq!(Actor::AdminToken.as_str(), "admin-token");
        let staff = Actor::Staff(UserId::parse("alice").unwrap());
        assert_eq!(staff.to_string(), "alice");
    }

    #[test]
    fn the_actor_is_who_the_staff_caller_is() {
        use crate::web::auth::Admin;
        assert_eq!(Actor::from(Admin::admin_token()), Actor::AdminToken);
        let alice = UserId::parse("alice").unwrap();
        assert_eq!(
            Actor::from(Admin::staff_member(alice.clone())),
            Actor::Staff(alice)
        );
    }
}
