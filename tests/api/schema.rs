//! The backends' migrations make one schema (issue 14, item 2): each backend
//! migrates a fresh database, which is read back from its own catalog
//! (`PRAGMA`s and `sqlite_master`, `pg_catalog`, `information_schema`) into
//! facts of one vocabulary, one line each:
//!
//! - `table.column: CLASS NULL|NOT NULL`, CLASS one of text, integer, bigint,
//!   timestamp (anything else is named as the backend calls it, and differs);
//!   on MySQL a time without microseconds or text that does not compare byte
//!   for byte (`utf8mb4_bin`) is a class of its own, so it differs too;
//! - `table: PRIMARY KEY (columns)`, `table: FOREIGN KEY (columns) REFERENCES t (columns)`;
//! - `table: INDEX (columns)` and `table: UNIQUE (columns)` (the primary key's
//!   own index left out). A partial index (SQLite, PostgreSQL) is read as the
//!   composite one migrations/mysql makes in its place: the column of its
//!   `WHERE` first, then its columns (`(next_attempt_at) WHERE handled_at IS NULL`
//!   is `(handled_at, next_attempt_at)`), or its columns alone when the
//!   condition is on one of them (`(provider_due_at) WHERE provider_due_at IS NOT NULL`);
//! - `table: CHECK on (columns)`: the columns each CHECK constraint reads;
//! - `table: TRIGGER name`.
//!
//! Every fact must hold on every backend compared, but for the deliberate
//! differences listed in [`KNOWN`], each with its reason (and each must still
//! be there: a difference that went away is taken off the list). The
//! comparison of all three is a MariaDB test (it needs PostgreSQL too); SQLite
//! against PostgreSQL is a PostgreSQL test.

use std::collections::{BTreeMap, BTreeSet};

use diesel::{QueryableByName, RunQueryDsl};
use shared_kernel::storage::db::{AnyConnection, DatabaseUrl, Db, PoolOptions};
use shop_tests::{Backend, TestDatabase};

/// A difference between the schemas that is meant: the fact, the backends
/// that have it (of sqlite, postgres, mariadb), and why.
struct Known {
    fact: &'static str,
    on: &'static [&'static str],
    why: &'static str,
}

/// The deliberate differences.
const KNOWN: &[Known] = &[
    Known {
        fact: "payments: UNIQUE (status, order_id)",
        on: &["sqlite", "postgres"],
        why: "at most one pending payment per order: a partial unique index \
              (order_id) WHERE status = 'pending', which MySQL does not have \
              (read as a composite here, it is not the same constraint)",
    },
    Known {
        fact: "payments: UNIQUE (open_order_id)",
        on: &["mariadb"],
        why: "MySQL's form of payments_one_open_per_order: a unique index on a \
              generated column that is the order id while the payment is pending, NULL otherwise",
    },
    Known {
        fact: "payments.open_order_id: text NULL",
        on: &["mariadb"],
        why: "the generated column of payments_one_open_per_order (STORED; no code writes it)",
    },
    Known {
        fact: "product_changes.id: bigint NOT NULL",
        on: &["mariadb"],
        why: "MySQL has no LISTEN/NOTIFY: the product cache polls product_changes, \
              which triggers on products append to (PostgreSQL notifies, SQLite \
              instances read PRAGMA data_version)",
    },
    Known {
        fact: "product_changes.product_id: text NOT NULL",
        on: &["mariadb"],
        why: "as product_changes.id",
    },
    Known {
        fact: "product_changes.changed_at: timestamp NOT NULL",
        on: &["mariadb"],
        why: "as product_changes.id",
    },
    Known {
        fact: "product_changes: PRIMARY KEY (id)",
        on: &["mariadb"],
        why: "as product_changes.id",
    },
    Known {
        fact: "product_changes: INDEX (changed_at)",
        on: &["mariadb"],
        why: "as product_changes.id (old rows are pruned by time)",
    },
    Known {
        fact: "products: TRIGGER products_changed_on_update",
        on: &["mariadb"],
        why: "writes product_changes (see product_changes.id)",
    },
    Known {
        fact: "products: TRIGGER products_changed_on_delete",
        on: &["mariadb"],
        why: "writes product_changes (see product_changes.id)",
    },
    Known {
        fact: "products: TRIGGER products_notify",
        on: &["postgres"],
        why: "NOTIFY shop_products for the product cache of every instance",
    },
];

/// The tables shop does not own: diesel's record of the migrations applied.
fn is_ours(table: &str) -> bool {
    !table.starts_with("__diesel") && !table.starts_with("sqlite_")
}

/// One row of a catalog query: every query selects four text columns `a`..`d`.
#[derive(QueryableByName, Debug)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    a: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    b: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    c: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    d: Option<String>,
}

impl Row {
    fn a(&self) -> String {
        self.a.clone().unwrap_or_default()
    }
    fn b(&self) -> String {
        self.b.clone().unwrap_or_default()
    }
    fn c(&self) -> String {
        self.c.clone().unwrap_or_default()
    }
    fn d(&self) -> String {
        self.d.clone().unwrap_or_default()
    }
}

fn rows<C>(conn: &mut C, sql: &str) -> Vec<Row>
where
    C: diesel::Connection,
    diesel::query_builder::SqlQuery: diesel::query_dsl::LoadQuery<'static, C, Row>,
{
    diesel::sql_query(sql)
        .load(conn)
        .unwrap_or_else(|e| panic!("{e}: {sql}"))
}

/// The identifiers an SQL expression names, lower-cased (string literals left out).
fn identifiers(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            // A literal, with '' for a quote inside.
            while let Some(c) = chars.next() {
                if c == '\'' {
                    if chars.peek() == Some(&'\'') {
                        chars.next();
                    } else {
                        break;
                    }
                }
            }
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c.to_ascii_lowercase());
        } else if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// The columns of `table` an expression reads, sorted, each once.
fn columns_read(expression: &str, columns: &BTreeSet<String>) -> Vec<String> {
    identifiers(expression)
        .into_iter()
        .filter(|w| columns.contains(w))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// An index's columns as MySQL's composite stand-in for a partial index has them.
fn as_composite(
    columns: Vec<String>,
    predicate: Option<&str>,
    table_columns: &BTreeSet<String>,
) -> Vec<String> {
    let Some(predicate) = predicate.filter(|p| !p.trim().is_empty()) else {
        return columns;
    };
    let mut condition: Vec<String> = Vec::new();
    for word in identifiers(predicate) {
        if table_columns.contains(&word) && !condition.contains(&word) && !columns.contains(&word) {
            condition.push(word);
        }
    }
    condition.extend(columns);
    condition
}

fn list(columns: &[String]) -> String {
    columns.join(", ")
}

/// What a schema says, table by table, in the vocabulary of the module's documentation.
#[derive(Default)]
struct Facts(BTreeSet<String>);

impl Facts {
    fn column(&mut self, table: &str, column: &str, class: &str, nullable: bool) {
        let null = if nullable { "NULL" } else { "NOT NULL" };
        self.0.insert(format!("{table}.{column}: {class} {null}"));
    }
    fn primary_key(&mut self, table: &str, columns: &[String]) {
        if !columns.is_empty() {
            self.0
                .insert(format!("{table}: PRIMARY KEY ({})", list(columns)));
        }
    }
    fn foreign_key(&mut self, table: &str, columns: &[String], to: &str, to_columns: &[String]) {
        self.0.insert(format!(
            "{table}: FOREIGN KEY ({}) REFERENCES {to} ({})",
            list(columns),
            list(to_columns)
        ));
    }
    fn index(&mut self, table: &str, unique: bool, columns: &[String]) {
        let kind = if unique { "UNIQUE" } else { "INDEX" };
        self.0
            .insert(format!("{table}: {kind} ({})", list(columns)));
    }
    fn check(&mut self, table: &str, columns: &[String]) {
        self.0
            .insert(format!("{table}: CHECK on ({})", list(columns)));
    }
    fn trigger(&mut self, table: &str, name: &str) {
        self.0.insert(format!("{table}: TRIGGER {name}"));
    }
    #[cfg(feature = "mysql")]
    fn other(&mut self, fact: String) {
        self.0.insert(fact);
    }
}

/// The class of an SQLite column's declared type.
fn sqlite_class(declared: &str) -> String {
    match declared.to_ascii_lowercase().as_str() {
        "text" => "text".into(),
        "integer" => "integer".into(),
        "bigint" => "bigint".into(),
        "timestamp" => "timestamp".into(),
        other => format!("SQLite {other}"),
    }
}

/// The CHECK expressions of an SQLite `CREATE TABLE` statement (column and table constraints).
fn sqlite_checks(create: &str) -> Vec<String> {
    let text: String = create
        .lines()
        .map(|line| line.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let bytes = text.as_bytes();
    let upper = text.to_ascii_uppercase();
    let mut checks = Vec::new();
    let mut from = 0;
    while let Some(at) = upper[from..].find("CHECK") {
        let start = from + at;
        from = start + 5;
        let before = start.checked_sub(1).map(|i| bytes[i]);
        if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        let Some(open) = text[from..].find('(').map(|i| from + i) else {
            break;
        };
        if !text[from..open].trim().is_empty() {
            continue;
        }
        let mut depth = 0;
        let mut in_literal = false;
        for (i, c) in text[open..].char_indices() {
            match c {
                '\'' => in_literal = !in_literal,
                '(' if !in_literal => depth += 1,
                ')' if !in_literal => {
                    depth -= 1;
                    if depth == 0 {
                        checks.push(text[open + 1..open + i].to_owned());
                        from = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    checks
}

fn sqlite_facts(conn: &mut diesel::sqlite::SqliteConnection) -> Facts {
    let mut facts = Facts::default();
    let tables = rows(
        conn,
        "SELECT name AS a, sql AS b, '' AS c, '' AS d FROM sqlite_master WHERE type = 'table'",
    );
    for table in tables.iter().filter(|t| is_ours(&t.a())) {
        let name = table.a();
        let columns = rows(
            conn,
            &format!(
                "SELECT name AS a, type AS b, CAST(\"notnull\" AS TEXT) AS c, CAST(pk AS TEXT) AS d \
                 FROM pragma_table_info('{name}')"
            ),
        );
        let column_names: BTreeSet<String> = columns.iter().map(|c| c.a()).collect();
        let mut primary_key: Vec<(i64, String)> = Vec::new();
        for column in &columns {
            facts.column(
                &name,
                &column.a(),
                &sqlite_class(&column.b()),
                column.c() == "0",
            );
            let position: i64 = column.d().parse().unwrap_or(0);
            if position > 0 {
                primary_key.push((position, column.a()));
            }
        }
        primary_key.sort();
        facts.primary_key(
            &name,
            &primary_key.into_iter().map(|(_, c)| c).collect::<Vec<_>>(),
        );
        let mut foreign_keys: BTreeMap<String, (String, Vec<String>, Vec<String>)> =
            BTreeMap::new();
        for key in rows(
            conn,
            &format!(
                "SELECT CAST(id AS TEXT) AS a, \"table\" AS b, \"from\" AS c, \"to\" AS d \
                 FROM pragma_foreign_key_list('{name}') ORDER BY id, seq"
            ),
        ) {
            let entry = foreign_keys.entry(key.a()).or_default();
            entry.0 = key.b();
            entry.1.push(key.c());
            entry.2.push(key.d());
        }
        for (to, columns, to_columns) in foreign_keys.into_values() {
            facts.foreign_key(&name, &columns, &to, &to_columns);
        }
        for index in rows(
            conn,
            &format!(
                "SELECT l.name AS a, CAST(l.\"unique\" AS TEXT) AS b, l.origin AS c, COALESCE(m.sql, '') AS d \
                 FROM pragma_index_list('{name}') l LEFT JOIN sqlite_master m ON m.name = l.name"
            ),
        ) {
            if index.c() == "pk" {
                continue;
            }
            let columns: Vec<String> = rows(
                conn,
                &format!(
                    "SELECT name AS a, '' AS b, '' AS c, '' AS d FROM pragma_index_info('{}') ORDER BY seqno",
                    index.a()
                ),
            )
            .iter()
            .map(Row::a)
            .collect();
            let create = index.d();
            let predicate = create
                .to_ascii_uppercase()
                .find(" WHERE ")
                .map(|at| &create[at + 7..]);
            facts.index(
                &name,
                index.b() == "1",
                &as_composite(columns, predicate, &column_names),
            );
        }
        for check in sqlite_checks(&table.b()) {
            facts.check(&name, &columns_read(&check, &column_names));
        }
    }
    for trigger in rows(
        conn,
        "SELECT name AS a, tbl_name AS b, '' AS c, '' AS d FROM sqlite_master WHERE type = 'trigger'",
    ) {
        facts.trigger(&trigger.b(), &trigger.a());
    }
    facts
}

/// The class of a PostgreSQL column's type (`information_schema.columns.data_type`).
fn postgres_class(data_type: &str) -> String {
    match data_type {
        "text" | "character varying" => "text".into(),
        "integer" => "integer".into(),
        "bigint" => "bigint".into(),
        "timestamp without time zone" => "timestamp".into(),
        other => format!("PostgreSQL {other}"),
    }
}

fn postgres_facts(conn: &mut diesel::pg::PgConnection) -> Facts {
    let mut facts = Facts::default();
    // The names of an attnum array's columns, in its order.
    let names = |array: &str, relation: &str| {
        format!(
            "array_to_string(ARRAY(SELECT a.attname::text FROM unnest({array}) WITH ORDINALITY k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = {relation} AND a.attnum = k.attnum ORDER BY k.ord), ',')"
        )
    };
    let split = |s: String| -> Vec<String> {
        s.split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let tables = rows(
        conn,
        "SELECT table_name::text AS a, '' AS b, '' AS c, '' AS d FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    );
    for table in tables.iter().filter(|t| is_ours(&t.a())) {
        let name = table.a();
        let relation = format!("'{name}'::regclass");
        let columns = rows(
            conn,
            &format!(
                "SELECT column_name::text AS a, data_type::text AS b, is_nullable::text AS c, '' AS d \
                 FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = '{name}'"
            ),
        );
        let column_names: BTreeSet<String> = columns.iter().map(|c| c.a()).collect();
        for column in &columns {
            facts.column(
                &name,
                &column.a(),
                &postgres_class(&column.b()),
                column.c() == "YES",
            );
        }
        for index in rows(
            conn,
            &format!(
                "SELECT {} AS a, i.indisunique::text AS b, i.indisprimary::text AS c, \
                 COALESCE(pg_get_expr(i.indpred, i.indrelid), '') AS d \
                 FROM pg_index i WHERE i.indrelid = {relation}",
                names("i.indkey::int2[]", "i.indrelid")
            ),
        ) {
            if index.c() == "true" {
                facts.primary_key(&name, &split(index.a()));
            } else {
                let predicate = index.d();
                facts.index(
                    &name,
                    index.b() == "true",
                    &as_composite(split(index.a()), Some(&predicate), &column_names),
                );
            }
        }
        for constraint in rows(
            conn,
            &format!(
                "SELECT c.contype::text AS a, {} AS b, COALESCE(c.confrelid::regclass::text, '') AS c, \
                 {} AS d FROM pg_constraint c WHERE c.conrelid = {relation} AND c.contype IN ('f', 'c')",
                names("c.conkey", "c.conrelid"),
                names("c.confkey", "c.confrelid"),
            ),
        ) {
            if constraint.a() == "f" {
                facts.foreign_key(
                    &name,
                    &split(constraint.b()),
                    &constraint.c(),
                    &split(constraint.d()),
                );
            } else {
                let mut read = split(constraint.b());
                read.sort();
                facts.check(&name, &read);
            }
        }
        for trigger in rows(
            conn,
            &format!(
                "SELECT tgname::text AS a, '' AS b, '' AS c, '' AS d FROM pg_trigger \
                 WHERE tgrelid = {relation} AND NOT tgisinternal"
            ),
        ) {
            facts.trigger(&name, &trigger.a());
        }
    }
    facts
}

/// The class of a MySQL column: its `DATA_TYPE`, with the precision of a
/// time (microseconds: 6) and the collation of text (byte for byte: `utf8mb4_bin`).
#[cfg(feature = "mysql")]
fn mysql_class(data_type: &str, precision: &str, collation: &str) -> String {
    match data_type {
        "varchar" | "text" | "mediumtext" | "longtext" | "char" if collation == "utf8mb4_bin" => {
            "text".into()
        }
        "varchar" | "text" | "mediumtext" | "longtext" | "char" => {
            format!("text in {collation} (not utf8mb4_bin)")
        }
        "int" => "integer".into(),
        "bigint" => "bigint".into(),
        "datetime" if precision == "6" => "timestamp".into(),
        "datetime" => format!("timestamp of precision {precision} (not microseconds)"),
        other => format!("MySQL {other}"),
    }
}

#[cfg(feature = "mysql")]
fn mysql_facts(conn: &mut diesel::mysql::MysqlConnection) -> Facts {
    let mut facts = Facts::default();
    let tables = rows(
        conn,
        "SELECT TABLE_NAME AS a, ENGINE AS b, TABLE_COLLATION AS c, '' AS d FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'",
    );
    for table in tables.iter().filter(|t| is_ours(&t.a())) {
        let name = table.a();
        if table.b() != "InnoDB" || table.c() != "utf8mb4_bin" {
            facts.other(format!(
                "{name}: ENGINE {} COLLATE {} (not InnoDB, utf8mb4_bin)",
                table.b(),
                table.c()
            ));
        }
        let columns = rows(
            conn,
            &format!(
                "SELECT COLUMN_NAME AS a, DATA_TYPE AS b, IS_NULLABLE AS c, \
                 CONCAT(COALESCE(CAST(DATETIME_PRECISION AS CHAR), ''), '/', COALESCE(COLLATION_NAME, '')) AS d \
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{name}'"
            ),
        );
        let column_names: BTreeSet<String> = columns.iter().map(|c| c.a()).collect();
        for column in &columns {
            let detail = column.d();
            let (precision, collation) = detail.split_once('/').unwrap_or_default();
            facts.column(
                &name,
                &column.a(),
                &mysql_class(&column.b(), precision, collation),
                column.c() == "YES",
            );
        }
        let mut keys: BTreeMap<String, (String, Vec<String>, Vec<String>)> = BTreeMap::new();
        for key in rows(
            conn,
            &format!(
                "SELECT CONSTRAINT_NAME AS a, COLUMN_NAME AS b, COALESCE(REFERENCED_TABLE_NAME, '') AS c, \
                 COALESCE(REFERENCED_COLUMN_NAME, '') AS d FROM information_schema.KEY_COLUMN_USAGE \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{name}' ORDER BY CONSTRAINT_NAME, ORDINAL_POSITION"
            ),
        ) {
            let entry = keys.entry(key.a()).or_default();
            entry.0 = key.c();
            entry.1.push(key.b());
            entry.2.push(key.d());
        }
        for (constraint, (to, columns, to_columns)) in keys {
            if constraint == "PRIMARY" {
                facts.primary_key(&name, &columns);
            } else if !to.is_empty() {
                facts.foreign_key(&name, &columns, &to, &to_columns);
            }
            // (A unique constraint is an index too: read below.)
        }
        let mut indexes: BTreeMap<String, (bool, Vec<String>)> = BTreeMap::new();
        for part in rows(
            conn,
            &format!(
                "SELECT INDEX_NAME AS a, CAST(NON_UNIQUE AS CHAR) AS b, COLUMN_NAME AS c, '' AS d \
                 FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{name}' \
                 AND INDEX_NAME <> 'PRIMARY' ORDER BY INDEX_NAME, SEQ_IN_INDEX"
            ),
        ) {
            let entry = indexes.entry(part.a()).or_default();
            entry.0 = part.b() == "0";
            entry.1.push(part.c());
        }
        for (unique, columns) in indexes.into_values() {
            facts.index(&name, unique, &columns);
        }
        for check in rows(
            conn,
            &format!(
                "SELECT CHECK_CLAUSE AS a, '' AS b, '' AS c, '' AS d FROM information_schema.CHECK_CONSTRAINTS \
                 WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = '{name}'"
            ),
        ) {
            facts.check(&name, &columns_read(&check.a(), &column_names));
        }
        for trigger in rows(
            conn,
            &format!(
                "SELECT TRIGGER_NAME AS a, '' AS b, '' AS c, '' AS d FROM information_schema.TRIGGERS \
                 WHERE TRIGGER_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = '{name}'"
            ),
        ) {
            facts.trigger(&name, &trigger.a());
        }
    }
    facts
}

/// The name a backend goes by in [`KNOWN`] and in messages.
fn label(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
        #[cfg(feature = "mysql")]
        Backend::Mysql => "mariadb",
    }
}

/// Migrates a fresh database of `backend` and reads its schema back.
fn migrated_schema(backend: Backend) -> Facts {
    let database = TestDatabase::create(backend);
    let url = DatabaseUrl::parse(&database.url()).expect("url");
    let options = PoolOptions {
        max_size: 1,
        ..PoolOptions::default()
    };
    let db = Db::connect(&url, &options).expect("connect");
    let mut conn = db.get_blocking().expect("connection");
    shared_kernel::storage::db::run_migrations(&mut conn, shop::startup::migrations())
        .expect("migrations");
    match &mut *conn {
        AnyConnection::Sqlite(c) => sqlite_facts(c),
        AnyConnection::Postgres(c) => postgres_facts(c),
        #[cfg(feature = "mysql")]
        AnyConnection::Mysql(c) => mysql_facts(c),
    }
}

/// Compares the schemas `backends` migrate to; fails with every difference
/// that is not in [`KNOWN`], and with every known one that is not there.
fn migrations_make_one_schema(backends: &[Backend]) {
    let schemas: Vec<(&str, Facts)> = backends
        .iter()
        .map(|b| (label(*b), migrated_schema(*b)))
        .collect();
    let compared: BTreeSet<&str> = schemas.iter().map(|(l, _)| *l).collect();
    let every: BTreeSet<&String> = schemas.iter().flat_map(|(_, f)| f.0.iter()).collect();
    let mut problems = Vec::new();
    for fact in every {
        let on: BTreeSet<&str> = schemas
            .iter()
            .filter(|(_, f)| f.0.contains(fact))
            .map(|(l, _)| *l)
            .collect();
        let known = KNOWN.iter().find(|k| k.fact == fact);
        let expected: BTreeSet<&str> = match known {
            Some(k) => {
                k.on.iter()
                    .copied()
                    .filter(|l| compared.contains(l))
                    .collect()
            }
            None => compared.clone(),
        };
        if on != expected {
            let missing: Vec<&str> = expected.difference(&on).copied().collect();
            let extra: Vec<&str> = on.difference(&expected).copied().collect();
            let mut line = format!("  {fact}\n      on {on:?}");
            if !missing.is_empty() {
                line.push_str(&format!(", missing on {missing:?}"));
            }
            if !extra.is_empty() {
                line.push_str(&format!(", not expected on {extra:?}"));
            }
            if let Some(k) = known {
                line.push_str(&format!(" (a known difference: {})", k.why));
            }
            problems.push(line);
        }
    }
    for known in KNOWN {
        let expected: Vec<&str> = known
            .on
            .iter()
            .copied()
            .filter(|l| compared.contains(l))
            .collect();
        let absent: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|l| {
                schemas
                    .iter()
                    .any(|(label, f)| label == l && !f.0.contains(known.fact))
            })
            .collect();
        if !absent.is_empty() {
            problems.push(format!(
                "  {}\n      listed as a known difference on {absent:?}, but it is not there: \
                 take it off the list",
                known.fact
            ));
        }
    }
    let sizes: Vec<String> = schemas
        .iter()
        .map(|(l, f)| format!("{l}: {} facts", f.0.len()))
        .collect();
    assert!(
        problems.is_empty(),
        "the schemas of {compared:?} differ ({}):\n{}",
        sizes.join(", "),
        problems.join("\n")
    );
    eprintln!("one schema on {compared:?} ({})", sizes.join(", "));
}

/// SQLite and PostgreSQL (the comparison of all three is the MariaDB test).
#[test]
#[cfg_attr(
    not(shop_postgres),
    ignore = "set SHOP_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
fn migrations_make_one_schema_postgres() {
    migrations_make_one_schema(&[Backend::Sqlite, Backend::Postgres]);
}

/// SQLite, PostgreSQL and MariaDB (it needs `SHOP_TEST_POSTGRES_URL` too).
#[test]
#[cfg(feature = "mysql")]
#[cfg_attr(
    not(shop_mysql),
    ignore = "set SHOP_TEST_MYSQL_URL to run the MariaDB tests"
)]
fn migrations_make_one_schema_mariadb() {
    assert!(
        std::env::var("SHOP_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty()),
        "this test compares all three schemas: set SHOP_TEST_POSTGRES_URL as well as SHOP_TEST_MYSQL_URL"
    );
    migrations_make_one_schema(&[Backend::Sqlite, Backend::Postgres, Backend::Mysql]);
}

#[test]
fn partial_indexes_read_as_mysql_composites() {
    let columns: BTreeSet<String> = ["status", "order_id", "handled_at", "next_attempt_at"]
        .map(str::to_owned)
        .into();
    assert_eq!(
        as_composite(
            vec!["next_attempt_at".into()],
            Some("(handled_at IS NULL)"),
            &columns
        ),
        ["handled_at", "next_attempt_at"]
    );
    assert_eq!(
        as_composite(
            vec!["order_id".into()],
            Some("((status)::text = 'pending'::text)"),
            &columns
        ),
        ["status", "order_id"]
    );
    assert_eq!(
        as_composite(
            vec!["handled_at".into()],
            Some("handled_at IS NOT NULL"),
            &columns
        ),
        ["handled_at"]
    );
    assert_eq!(
        sqlite_checks(
            "CREATE TABLE t (a TEXT CHECK (a IN ('x)', 'y')), -- CHECK (nothing)\n b INT, CHECK ((a = 'x') = (b IS NULL)))"
        ),
        ["a IN ('x)', 'y')", "(a = 'x') = (b IS NULL)"]
    );
}
