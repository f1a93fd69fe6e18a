"""A whole purchase through a client SDK generated from openapi.yaml.

The client (package `shop_client`) is generated at test time by the README's
own recipe (.ci/sdk.sh runs it, into target/); nothing in it is edited. This script
plays a shop front end acting for a signed-in customer (the generated
AuthenticatedClient with the customer's token), the shop's staff (the same
client with the admin token) and a payment gateway:

    python purchase.py BASE_URL ADMIN_TOKEN WEBHOOK_SECRET CUSTOMER CUSTOMER_TOKEN

CUSTOMER_TOKEN is a JWT whose `sub` is CUSTOMER (`shop token --user CUSTOMER`).
"""

import hashlib
import hmac
import sys
import time

import httpx
from shop_client import AuthenticatedClient, Client
from shop_client.api.orders import create_order, get_order_info, list_orders
from shop_client.api.payments import get_payment, initiate_payment, payment_result_notify
from shop_client.api.products import create_product, get_product_info
from shop_client.models import (
    CreateOrder,
    CreateOrderItem,
    CreateProduct,
    InitiatePayment,
    NotifiedPaymentStatus,
    OrderStatusView,
    PaymentMethod,
    PaymentNotification,
    PaymentStatus,
    Problem,
)

base, admin_token, webhook_secret, customer_id, customer_token = sys.argv[1:6]


def sign(request: httpx.Request) -> None:
    """The gateway's side: sign the exact bytes sent (Shop-Signature)."""
    timestamp = str(int(time.time()))
    body = request.read()
    digest = hmac.new(webhook_secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    request.headers["Shop-Signature"] = f"t={timestamp},v1={digest}"


admin = AuthenticatedClient(base_url=base, token=admin_token, raise_on_unexpected_status=True)
customer = AuthenticatedClient(base_url=base, token=customer_token, raise_on_unexpected_status=True)
anonymous = Client(base_url=base, raise_on_unexpected_status=True)
gateway = Client(base_url=base, raise_on_unexpected_status=True, httpx_args={"event_hooks": {"request": [sign]}})


def expect(response, status):
    assert response.status_code == status, f"{response.status_code}: {response.content!r}"
    return response.parsed


product = expect(
    create_product.sync_detailed(
        client=admin,
        body=CreateProduct(name="iPhone 15", description="SDK test", price=999900, currency="CNY", stock=10),
    ),
    201,
)
# The catalog is public.
info = expect(get_product_info.sync_detailed(client=anonymous, product_id=product.product_id), 200)
assert (info.name, info.price, info.currency, info.stock) == ("iPhone 15", 999900, "CNY", 10), info

lines = [CreateOrderItem(product_id=product.product_id, quantity=2)]

# Without a token, a customer route answers 401 (a documented answer, so the SDK parses it).
refused = create_order.sync_detailed(client=anonymous, body=CreateOrder(items=lines))
assert refused.status_code == 401, f"{refused.status_code}: {refused.content!r}"
assert isinstance(refused.parsed, Problem) and refused.parsed.code == "unauthorized", refused.parsed
assert refused.headers.get("www-authenticate", "").startswith("Bearer"), refused.headers
refused = list_orders.sync_detailed(client=AuthenticatedClient(base_url=base, token="not-a-jwt"))
assert refused.status_code == 401 and refused.parsed.code == "invalid_token", refused.parsed
# A customer acts only as themself.
refused = create_order.sync_detailed(client=customer, body=CreateOrder(user_id=customer_id + "-other", items=lines))
assert refused.status_code == 403 and refused.parsed.code == "user_mismatch", refused.parsed
assert expect(list_orders.sync_detailed(client=customer), 200).items == []

order = expect(create_order.sync_detailed(client=customer, body=CreateOrder(items=lines)), 201)
assert order.status == OrderStatusView.PENDING_PAYMENT and order.amount == 1999800, order
assert order.user_id == customer_id, order

payment = expect(
    initiate_payment.sync_detailed(
        client=customer, body=InitiatePayment(order_id=order.order_id, payment_method=PaymentMethod.WECHAT_PAY)
    ),
    201,
)
assert payment.payment_url and payment.qr_code.startswith("<?xml"), payment

# The signature is set by the gateway client's request hook; the required header needs a value to start with.
result = expect(
    payment_result_notify.sync_detailed(
        client=gateway,
        shop_signature="set-by-the-request-hook",
        body=PaymentNotification(
            payment_id=payment.payment_id,
            payment_status=NotifiedPaymentStatus.SUCCESS,
            amount=payment.amount,
            currency=payment.currency,
            transaction_id="sdk-tx-1",
        ),
    ),
    200,
)
assert result.applied and result.payment_status == PaymentStatus.SUCCEEDED, result

for _ in range(100):
    order = expect(get_order_info.sync_detailed(client=customer, order_id=order.order_id), 200)
    if order.status == OrderStatusView.PAID:
        break
    time.sleep(0.1)
assert order.status == OrderStatusView.PAID, order
assert expect(get_payment.sync_detailed(client=customer, payment_id=payment.payment_id), 200).status == PaymentStatus.SUCCEEDED
assert expect(get_product_info.sync_detailed(client=customer, product_id=product.product_id), 200).stock == 8
# The customer's list holds the order; staff read it by naming the customer.
assert [o.order_id for o in expect(list_orders.sync_detailed(client=customer), 200).items] == [order.order_id]
listed = expect(list_orders.sync_detailed(client=admin, user_id=customer_id), 200)
assert [o.order_id for o in listed.items] == [order.order_id], listed
assert expect(get_order_info.sync_detailed(client=admin, order_id=order.order_id), 200).status == OrderStatusView.PAID
print(f"generated SDK: order {order.order_id} is paid")
