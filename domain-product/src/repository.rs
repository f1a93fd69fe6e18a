//! The diesel adapter of the catalog. Functions take `&mut AnyConnection`
//! so that the caller owns the transaction.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use shared_kernel::model::money::{Currency, Money};
use shared_kernel::storage::db::AnyConnection;
use shared_kernel::web::pagination::PageRequest;

use crate::model::{Description, NewProduct, Product, ProductId, ProductName, Stock};
use crate::schema::products;

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

/// One page in id order, plus one extra row to tell whether more follow.
pub fn list(conn: &mut AnyConnection, page: &PageRequest) -> QueryResult<Vec<Product>> {
    let mut query = products::table
        .select(ProductRow::as_select())
        .order(products::id.asc())
        .into_boxed();
    if let Some(after) = &page.after {
        query = query.filter(products::id.gt(after.clone()));
    }
    query
        .limit(page.fetch_size())
        .load(conn)?
        .into_iter()
        .map(ProductRow::into_domain)
        .collect()
}

/// Sets the units on hand; returns whether the product exists.
pub fn set_stock(
    conn: &mut AnyConnection,
    id: &ProductId,
    stock: Stock,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    if !id.could_exist() {
        return Ok(false);
    }
    let updated = diesel::update(products::table.find(id.as_str()))
        .set((
            products::stock.eq(stock.units()),
            products::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(updated == 1)
}

pub fn is_empty(conn: &mut AnyConnection) -> QueryResult<bool> {
    let first: Option<String> = products::table
        .select(products::id)
        .first(conn)
        .optional()?;
    Ok(first.is_none())
}
