//! `listAuditEvents`: the audit log, for staff.

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{AuditEvent, AuditFilter};
use crate::model::clock;
use crate::storage::db::{Db, DbError};
use crate::web::auth::{Admin, UserId};
use crate::web::extract::{Query, invalid_query};
use crate::web::pagination::{PageQuery, PageRequest};
use crate::web::problem::responses::{TooManyAuthFailures, Unauthorized, Unavailable};
use crate::{FieldViolation, Problem};

/// Mounts the audit log's route (under `/api/v1`).
pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_audit_events);
}

/// One recorded staff write.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEventView {
    #[schema(example = "019b3f2c-7d0e-7f00-b9e6-5c3a0f1d2e4b")]
    pub audit_event_id: String,
    /// A staff token's `sub`, or `admin-token` for the admin token.
    #[schema(example = "admin-token")]
    pub actor: String,
    /// `<target type>.<verb>`.
    #[schema(example = "product.stock_set")]
    pub action: String,
    #[schema(example = "product")]
    pub target_type: String,
    #[schema(example = "019b3f2c-7d0e-7f00-b9e6-5c3a0f1d2e4b")]
    pub target_id: String,
    /// What changed, as it was (null for a creation).
    #[schema(value_type = Option<Object>, required = true, example = json!({"stock": 25}))]
    pub before: Option<serde_json::Value>,
    /// What changed, as it became (null for a deletion).
    #[schema(value_type = Option<Object>, required = true, example = json!({"stock": 40}))]
    pub after: Option<serde_json::Value>,
    /// The id of the request that made the change (its `X-Request-Id`).
    #[schema(required = true, example = "7f0c3a52-9d1e-4b8a-a3c2-5e6f7a8b9c0d")]
    pub request_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

impl From<AuditEvent> for AuditEventView {
    fn from(e: AuditEvent) -> Self {
        Self {
            audit_event_id: e.id,
            actor: e.actor,
            action: e.action,
            target_type: e.target_type,
            target_id: e.target_id,
            before: e.before,
            after: e.after,
            request_id: e.request_id,
            occurred_at: clock::to_utc(e.occurred_at),
        }
    }
}

/// One page of the audit log, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEventList {
    pub items: Vec<AuditEventView>,
    /// Pass as `cursor` to read the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_cursor: Option<String>,
}

/// An actor as `listAuditEvents` takes it: a user id (`admin-token` is one).
pub const ACTOR_PATTERN: &str = "^[0-9A-Za-z][0-9A-Za-z_.:@|-]{0,63}$";
/// A target's id as `listAuditEvents` takes it.
pub const TARGET_ID_PATTERN: &str = "^[0-9A-Za-z_-]{1,64}$";
/// An action: `<target type>.<verb>`.
pub const ACTION_PATTERN: &str = r"^[a-z_]{1,32}\.[a-z_]{1,32}$";

/// The filters of `listAuditEvents` beside its page ([`PageQuery`]).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only what this actor did (`admin-token`, or a staff token's `sub`).
    #[param(
        pattern = "^[0-9A-Za-z][0-9A-Za-z_.:@|-]{0,63}$",
        example = "admin-token"
    )]
    pub actor: Option<String>,
    /// Only what was done to this target (a product's id, ...).
    #[param(
        pattern = "^[0-9A-Za-z_-]{1,64}$",
        example = "019b3f2c-7d0e-7f00-b9e6-5c3a0f1d2e4b"
    )]
    pub target_id: Option<String>,
    /// Only this action.
    #[param(
        pattern = r"^[a-z_]{1,32}\.[a-z_]{1,32}$",
        example = "product.stock_set"
    )]
    pub action: Option<String>,
}

impl AuditQuery {
    fn into_filter(self) -> Result<AuditFilter, Problem> {
        let mut errors = Vec::new();
        let mut checked =
            |field: &str, value: Option<String>, valid: fn(&str) -> bool, rule: &str| {
                value.filter(|v| {
                    let ok = valid(v);
                    if !ok {
                        errors.push(FieldViolation::new(field, rule));
                    }
                    ok
                })
            };
        let actor = checked(
            "actor",
            self.actor,
            is_actor,
            "must be admin-token or a user id: 1 to 64 letters, digits or _.:@|-, starting with a letter or digit",
        );
        let target_id = checked(
            "targetId",
            self.target_id,
            is_target_id,
            "must be 1 to 64 letters, digits, - or _",
        );
        let action = checked(
            "action",
            self.action,
            is_action,
            "must be <target type>.<verb>, such as product.stock_set",
        );
        if errors.is_empty() {
            Ok(AuditFilter {
                actor,
                target_id,
                action,
            })
        } else {
            Err(invalid_query(errors))
        }
    }
}

/// [`ACTOR_PATTERN`].
pub fn is_actor(raw: &str) -> bool {
    UserId::parse(raw).is_ok()
}

/// [`TARGET_ID_PATTERN`].
pub fn is_target_id(raw: &str) -> bool {
    (1..=64).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// [`ACTION_PATTERN`].
pub fn is_action(raw: &str) -> bool {
    let part = |p: &str| {
        (1..=32).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    };
    raw.split_once('.').is_some_and(|(a, b)| part(a) && part(b))
}

/// List the audit log (staff)
///
/// Every staff write (catalog changes, stock set by staff, ...), newest
/// first, a page at a time: who, what, to which target, what changed (as
/// it was and as it became), the request and the time. Each filter given
/// must match exactly. An entry is written in the transaction of its
/// change: a write that failed has none.
#[utoipa::path(
    operation_id = "listAuditEvents",
    tag = "audit",
    security(("adminToken" = [])),
    params(AuditQuery, PageQuery),
    responses(
        (status = 200, description = "A page of the audit log, newest first", body = AuditEventList),
        (status = 400, description = "A filter, `limit` or `cursor` is invalid (`invalid_query`, `errors` names it)", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyAuthFailures),
        (status = 503, response = Unavailable),
    )
)]
#[get("/audit-events")]
async fn list_audit_events(
    _admin: Admin,
    db: web::Data<Db>,
    query: Query<AuditQuery>,
    page: Query<PageQuery>,
) -> Result<HttpResponse, Problem> {
    let filter = query.0.into_filter()?;
    let page = PageRequest::try_from(page.0)?;
    let (events, next_cursor) = db
        .run::<_, DbError, _>(move |conn| super::list(conn, &filter, &page).map_err(DbError::Query))
        .await
        .map_err(Problem::from)?;
    Ok(HttpResponse::Ok().json(AuditEventList {
        items: events.into_iter().map(AuditEventView::from).collect(),
        next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use super::is_action;

    #[test]
    fn actions_are_a_target_type_and_a_verb() {
        assert!(is_action("product.created"));
        assert!(is_action("product.stock_set"));
        for bad in [
            "",
            "product",
            ".created",
            "product.",
            "Product.created",
            "a.b.c",
            "a%.b",
        ] {
            assert!(!is_action(bad), "{bad}");
        }
    }
}
