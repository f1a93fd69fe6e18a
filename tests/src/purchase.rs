//! The purchase flow's requests, written once for every way the tests run
//! shop: a [`TestApp`](crate::TestApp), where every route is at one address,
//! and the processes of split mode, where products, orders and payments are
//! each at their own service. They are built, not sent, so that a caller can
//! send one again (split mode retries while a service restarts).

use reqwest::{Client, Method, RequestBuilder};
use serde_json::{Value, json};

use crate::signer;

/// Requests that carry one bearer token: a customer's, or the admin token
/// for [`create_product`](Self::create_product).
pub struct Caller<'a> {
    pub client: &'a Client,
    pub token: &'a str,
}

impl<'a> Caller<'a> {
    pub fn new(client: &'a Client, token: &'a str) -> Self {
        Self { client, token }
    }

    fn request(&self, method: Method, base: &str, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{base}{path}"))
            .bearer_auth(self.token)
    }

    /// `POST /api/v1/products` (the admin token): `stock` units at `price` in `currency`.
    pub fn create_product(
        &self,
        base: &str,
        name: &str,
        price: i64,
        currency: &str,
        stock: i64,
    ) -> RequestBuilder {
        self.request(Method::POST, base, "/api/v1/products")
            .json(&json!({"name": name, "description": "test product", "price": price, "currency": currency, "stock": stock}))
    }

    /// `POST /api/v1/orders`: `quantity` of `product`.
    pub fn place_order(&self, base: &str, product: &str, quantity: i64) -> RequestBuilder {
        self.request(Method::POST, base, "/api/v1/orders")
            .json(&json!({"items": [{"productId": product, "quantity": quantity}]}))
    }

    /// `POST /api/v1/payments`: a payment of `order` by `method`, on `channel` when given.
    pub fn initiate(
        &self,
        base: &str,
        order: &str,
        method: &str,
        channel: Option<&str>,
    ) -> RequestBuilder {
        let mut body = json!({"orderId": order, "paymentMethod": method});
        if let Some(channel) = channel {
            body["channel"] = json!(channel);
        }
        self.request(Method::POST, base, "/api/v1/payments")
            .json(&body)
    }

    /// `POST /api/v1/orders/{order}/cancel` (no body).
    pub fn cancel(&self, base: &str, order: &str) -> RequestBuilder {
        self.request(
            Method::POST,
            base,
            &format!("/api/v1/orders/{order}/cancel"),
        )
    }

    /// `GET /api/v1/orders/{order}`.
    pub fn order(&self, base: &str, order: &str) -> RequestBuilder {
        self.request(Method::GET, base, &format!("/api/v1/orders/{order}"))
    }

    /// `GET /api/v1/payments/{payment}`.
    pub fn payment(&self, base: &str, payment: &str) -> RequestBuilder {
        self.request(Method::GET, base, &format!("/api/v1/payments/{payment}"))
    }
}

/// The sandbox gateway's report that `payment` succeeded: `amount` CNY, as `transaction`.
pub fn success(payment: &Value, amount: i64, transaction: &str) -> Value {
    json!({"paymentId": payment["paymentId"], "paymentStatus": "success", "amount": amount, "currency": "CNY", "transactionId": transaction})
}

/// A gateway notification of `body` to `url`, signed with the test webhook
/// secret at `timestamp` (`Shop-Signature`).
pub fn notification(client: &Client, url: &str, body: &Value, timestamp: i64) -> RequestBuilder {
    let raw = serde_json::to_vec(body).expect("json");
    let signature = signer().sign(timestamp, &raw);
    client
        .post(url)
        .header("Shop-Signature", signature)
        .header("content-type", "application/json")
        .body(raw)
}
