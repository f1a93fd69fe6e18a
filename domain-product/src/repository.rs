//! The diesel adapter of the catalog. Functions take `&mut AnyConnection`
//! so that the caller owns the transaction.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use shared_kernel::model::money::{Currency, Money};
use shared_kernel::storage::db::AnyConnection;
use shared_kernel::web::pagination::PageRequest;

use crate::model::{
    Description, NewProduct, Product, ProductFilter, ProductId, ProductName, ProductSort,
    ProductStatus, Stock, StockMovement, fold_name,
};
use crate::schema::{products, stock_movements};

/// A row as stored.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = products)]
struct ProductRow {
    id: String,
    name: String,
    description: String,
    price_minor: i64,
    currency: String,
    stock: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    status: String,
    low_stock_threshold: Option<i64>,
}

/// A row to insert.
#[derive(Debug, Insertable)]
#[diesel(table_name = products)]
struct NewProductRow<'a> {
    id: &'a str,
    name: &'a str,
    description: &'a str,
    price_minor: i64,
    currency: &'a str,
    stock: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    status: &'a str,
    name_folded: &'a str,
}

impl ProductRow {
    /// Rows were validated on the way in; a row that no longer passes is a bug worth an error, not a panic.
    fn into_domain(self) -> QueryResult<Product> {
        let corrupt = |what: String| diesel::result::Error::DeserializationError(what.into());
        let currency = Currency::parse(&self.currency).map_err(|e| corrupt(e.to_string()))?;
        Ok(Product {
            id: ProductId::from(self.id),
            name: ProductName::parse(&self.name).map_err(corrupt)?,
            description: Description::parse(&self.description).map_err(corrupt)?,
            price: Money::new(self.price_minor, currency),
            stock: Stock::stored(self.stock).map_err(corrupt)?,
            status: ProductStatus::parse(&self.status)
                .ok_or_else(|| corrupt(format!("unknown product status {:?}", self.status)))?,
            low_stock_threshold: self.low_stock_threshold,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

pub fn insert(
    conn: &mut AnyConnection,
    id: &ProductId,
    new: &NewProduct,
    now: NaiveDateTime,
) -> QueryResult<()> {
    let currency = new.price.currency();
    let folded = fold_name(&new.name);
    diesel::insert_into(products::table)
        .values(NewProductRow {
            id: id.as_str(),
            name: new.name.as_str(),
            description: new.description.as_str(),
            price_minor: new.price.minor(),
            currency: currency.as_str(),
            stock: new.stock.units(),
            created_at: now,
            updated_at: now,
            status: ProductStatus::Active.as_str(),
            name_folded: &folded,
        })
        .execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut AnyConnection, id: &ProductId) -> QueryResult<Option<Product>> {
    if !id.could_exist() {
        return Ok(None);
    }
    products::table
        .find(id.as_str())
        .select(ProductRow::as_select())
        .first(conn)
        .optional()?
        .map(ProductRow::into_domain)
        .transpose()
}

/// Where a page after `cursor` starts, in the sort's keys: the keys of the
/// product the cursor names (the last one of the previous page).
struct CursorKeys {
    id: String,
    created_at: NaiveDateTime,
    price_minor: i64,
    name_folded: String,
}

/// The keys of the product `cursor` names; `None` when it names none.
fn cursor_keys(conn: &mut AnyConnection, cursor: &str) -> QueryResult<Option<CursorKeys>> {
    let keys: Option<(NaiveDateTime, i64, String)> = products::table
        .find(cursor)
        .select((
            products::created_at,
            products::price_minor,
            products::name_folded,
        ))
        .first(conn)
        .optional()?;
    Ok(
        keys.map(|(created_at, price_minor, name_folded)| CursorKeys {
            id: cursor.to_owned(),
            created_at,
            price_minor,
            name_folded,
        }),
    )
}

/// `text` as a LIKE pattern that matches it anywhere, literally: `%` and
/// `_` in it are not wildcards (escaped with `!`, which needs no quoting in
/// any backend's SQL, unlike a backslash in MySQL's).
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '!') {
            pattern.push('!');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Orders `$query` by `products::$column` then the id, both `$dir` (`asc` or
/// `desc`), starting strictly past the cursor product's keys `$after`
/// (`Option<CursorKeys>`, whose `$key` is the column's value).
macro_rules! keyset {
    ($query:expr, $after:expr, $column:ident, $key:ident, asc) => {
        keyset!(@ $query, $after, $column, $key, gt, asc)
    };
    ($query:expr, $after:expr, $column:ident, $key:ident, desc) => {
        keyset!(@ $query, $after, $column, $key, lt, desc)
    };
    (@ $query:expr, $after:expr, $column:ident, $key:ident, $past:ident, $dir:ident) => {{
        let mut query = $query;
        if let Some(k) = $after {
            query = query.filter(
                products::$column
                    .$past(k.$key.clone())
                    .or(products::$column.eq(k.$key).and(products::id.$past(k.id))),
            );
        }
        query.order((products::$column.$dir(), products::id.$dir()))
    }};
}

/// One page of the products `filter` selects in `sort` order, plus one
/// extra row to tell whether more follow; `None` when the page's cursor
/// names no product.
pub fn list(
    conn: &mut AnyConnection,
    filter: &ProductFilter,
    sort: ProductSort,
    page: &PageRequest,
) -> QueryResult<Option<Vec<Product>>> {
    let mut query = products::table.select(ProductRow::as_select()).into_boxed();
    if let Some(status) = filter.status {
        query = query.filter(products::status.eq(status.as_str()));
    }
    if let Some(text) = &filter.name_contains {
        query = query.filter(
            products::name_folded
                .like(contains_pattern(text))
                .escape('!'),
        );
    }
    // Oldest first is the order of the id alone: the cursor is the key.
    // Other orders start after the cursor's product's own keys.
    let after = match (&page.after, sort) {
        (Some(_), ProductSort::Oldest) | (None, _) => None,
        (Some(cursor), _) => match cursor_keys(conn, cursor)? {
            Some(keys) => Some(keys),
            None => return Ok(None),
        },
    };
    query = match sort {
        ProductSort::Oldest => {
            if let Some(cursor) = &page.after {
                query = query.filter(products::id.gt(cursor.clone()));
            }
            query.order(products::id.asc())
        }
        ProductSort::Newest => keyset!(query, after, created_at, created_at, desc),
        ProductSort::CheapestFirst => keyset!(query, after, price_minor, price_minor, asc),
        ProductSort::DearestFirst => keyset!(query, after, price_minor, price_minor, desc),
        ProductSort::Name => keyset!(query, after, name_folded, name_folded, asc),
    };
    query
        .limit(page.fetch_size())
        .load(conn)?
        .into_iter()
        .map(ProductRow::into_domain)
        .collect::<QueryResult<Vec<_>>>()
        .map(Some)
}

/// Sets the units on hand to `stock` while they are still `was`; returns
/// whether it did (the product exists and its stock had not moved).
pub fn set_stock(
    conn: &mut AnyConnection,
    id: &ProductId,
    was: Stock,
    stock: Stock,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    if !id.could_exist() {
        return Ok(false);
    }
    let updated = diesel::update(
        products::table
            .find(id.as_str())
            .filter(products::stock.eq(was.units())),
    )
    .set((
        products::stock.eq(stock.units()),
        products::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(updated == 1)
}

/// Writes an edit's fields while the product is still as it was read
/// (`was_updated_at`: every change of the row moves it); returns whether
/// it did.
pub fn update_fields(
    conn: &mut AnyConnection,
    after: &Product,
    was_updated_at: NaiveDateTime,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let updated = diesel::update(
        products::table
            .find(after.id.as_str())
            .filter(products::updated_at.eq(was_updated_at)),
    )
    .set((
        products::name.eq(after.name.as_str()),
        products::name_folded.eq(fold_name(&after.name)),
        products::description.eq(after.description.as_str()),
        products::price_minor.eq(after.price.minor()),
        products::currency.eq(after.price.currency().as_str()),
        products::low_stock_threshold.eq(after.low_stock_threshold),
        products::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(updated == 1)
}

/// Moves the product to `status`; returns whether it moved (it exists and
/// was in the other status).
pub fn set_status(
    conn: &mut AnyConnection,
    id: &ProductId,
    status: ProductStatus,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    if !id.could_exist() {
        return Ok(false);
    }
    let updated = diesel::update(
        products::table
            .find(id.as_str())
            .filter(products::status.ne(status.as_str())),
    )
    .set((
        products::status.eq(status.as_str()),
        products::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(updated == 1)
}

/// Changes the units on hand by `delta` unless that would take them below
/// zero, in one conditional statement (the row lock orders it with
/// reservations and other adjustments); returns the stock it left, or
/// `None` when it changed nothing (no such product, or not enough stock),
/// with the product's low-stock threshold.
pub fn adjust_stock(
    conn: &mut AnyConnection,
    id: &ProductId,
    delta: i64,
    now: NaiveDateTime,
) -> QueryResult<Option<(i64, Option<i64>)>> {
    if !id.could_exist() {
        return Ok(None);
    }
    shared_kernel::update_returning!(
        conn,
        diesel::update(
            products::table
                .filter(products::id.eq(id.as_str()))
                .filter(products::stock.ge(-delta)),
        )
        .set((
            products::stock.eq(products::stock + delta),
            products::updated_at.eq(now),
        )),
        (products::stock, products::low_stock_threshold),
        products::table
            .filter(products::id.eq(id.as_str()))
            .select((products::stock, products::low_stock_threshold))
    )
}

/// Records a staff change of stock.
pub fn insert_movement(conn: &mut AnyConnection, movement: &StockMovement) -> QueryResult<()> {
    diesel::insert_into(stock_movements::table)
        .values((
            stock_movements::id.eq(&movement.id),
            stock_movements::product_id.eq(movement.product_id.as_str()),
            stock_movements::actor.eq(&movement.actor),
            stock_movements::reason.eq(&movement.reason),
            stock_movements::note.eq(&movement.note),
            stock_movements::delta.eq(movement.delta),
            stock_movements::stock_after.eq(movement.stock_after),
            stock_movements::request_id.eq(&movement.request_id),
            stock_movements::occurred_at.eq(movement.occurred_at),
        ))
        .execute(conn)?;
    Ok(())
}

type MovementRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    i64,
    Option<String>,
    NaiveDateTime,
);

/// A page of a product's stock movements, newest first, plus one extra row
/// to tell whether more follow (the cursor is the last id seen).
pub fn movements(
    conn: &mut AnyConnection,
    id: &ProductId,
    page: &PageRequest,
) -> QueryResult<Vec<StockMovement>> {
    let mut query = stock_movements::table
        .filter(stock_movements::product_id.eq(id.as_str()))
        .select((
            stock_movements::id,
            stock_movements::product_id,
            stock_movements::actor,
            stock_movements::reason,
            stock_movements::note,
            stock_movements::delta,
            stock_movements::stock_after,
            stock_movements::request_id,
            stock_movements::occurred_at,
        ))
        .order(stock_movements::id.desc())
        .limit(page.fetch_size())
        .into_boxed();
    if let Some(after) = &page.after {
        query = query.filter(stock_movements::id.lt(after.clone()));
    }
    let rows: Vec<MovementRow> = query.load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(id, product_id, actor, reason, note, delta, stock_after, request_id, occurred_at)| {
                StockMovement {
                    id,
                    product_id: ProductId::from(product_id),
                    actor,
                    reason,
                    note,
                    delta,
                    stock_after,
                    request_id,
                    occurred_at,
                }
            },
        )
        .collect())
}

pub fn is_empty(conn: &mut AnyConnection) -> QueryResult<bool> {
    let first: Option<String> = products::table
        .select(products::id)
        .first(conn)
        .optional()?;
    Ok(first.is_none())
}
