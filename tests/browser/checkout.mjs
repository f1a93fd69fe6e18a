// The sandbox checkout page in headless Chromium: a customer (with their
// token) orders and opens the payment URL, which carries its own ?token=,
// clicks Pay, and the order becomes paid; the same page without ?token= is
// refused (403).
//
//   node checkout.mjs BASE_URL ADMIN_TOKEN SCREENSHOT_DIR CUSTOMER_TOKEN
import { chromium } from 'playwright-core';

const [base, token, screenshots, customerToken] = process.argv.slice(2);
if (!base || !token || !screenshots || !customerToken) {
  console.error('usage: node checkout.mjs BASE_URL ADMIN_TOKEN SCREENSHOT_DIR CUSTOMER_TOKEN');
  process.exit(2);
}
const asCustomer = { authorization: `Bearer ${customerToken}` };

async function api(method, path, body, headers = {}) {
  const response = await fetch(base + path, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await response.json();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(json)}`);
  return json;
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

const product = await api('POST', '/api/v1/products',
  { name: 'iPhone 15', description: 'Browser test', price: 999900, currency: 'CNY', stock: 5 },
  { authorization: `Bearer ${token}` });
const order = await api('POST', '/api/v1/orders',
  { items: [{ productId: product.productId, quantity: 1 }] }, asCustomer);
const payment = await api('POST', '/api/v1/payments', { orderId: order.orderId, paymentMethod: 'wechat_pay' }, asCustomer);
console.log(`order ${order.orderId}, payment ${payment.paymentId}: ${payment.paymentUrl}`);
const checkoutUrl = new URL(payment.paymentUrl);
assert(checkoutUrl.searchParams.get('token'), `the payment URL carries a token: ${payment.paymentUrl}`);
const untokened = new URL(checkoutUrl);
untokened.search = '';

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  // No request may leave loopback: the page is plain HTML with nothing to fetch.
  const outside = [];
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) outside.push(request.url());
  });
  // Without its token the checkout URL is refused, and nothing can be paid from it.
  const refused = await page.goto(untokened.href);
  assert(refused.status() === 403, `${untokened.href} answered ${refused.status()}, not 403`);
  assert((await page.$('#pay')) === null, 'the refused page offers no Pay button');
  await page.screenshot({ path: `${screenshots}/sandbox-checkout-no-token.png`, fullPage: true });
  const wrong = new URL(checkoutUrl);
  wrong.searchParams.set('token', 'not-the-token');
  assert((await page.goto(wrong.href)).status() === 403, 'a wrong ?token= is refused');

  const opened = await page.goto(payment.paymentUrl);
  assert(opened.status() === 200, `the checkout URL answered ${opened.status()}`);
  const text = await page.textContent('body');
  assert(text.includes('9999.00 CNY'), `the page shows the amount: ${text}`);
  assert(text.includes(order.orderId), 'the page shows the order');
  await page.screenshot({ path: `${screenshots}/sandbox-checkout.png`, fullPage: true });
  await page.click('#pay');
  await page.waitForSelector('#result');
  const result = await page.textContent('#result');
  assert(result.includes('Payment succeeded'), `the result page: ${result}`);
  await page.screenshot({ path: `${screenshots}/sandbox-checkout-paid.png`, fullPage: true });
  assert(outside.length === 0, `requests left loopback: ${outside.join(', ')}`);
} finally {
  await browser.close();
}

let status;
for (let i = 0; i < 100; i++) {
  status = (await api('GET', `/api/v1/orders/${order.orderId}`, undefined, asCustomer)).status;
  if (status === 'paid') break;
  await new Promise((resolve) => setTimeout(resolve, 100));
}
assert(status === 'paid', `the order is ${status}, not paid`);
const paid = await api('GET', `/api/v1/payments/${payment.paymentId}`, undefined, asCustomer);
assert(paid.status === 'succeeded', `the payment is ${paid.status}`);
// The POST of the Pay form answers 403 without the token too.
const post = await fetch(untokened.href, {
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: 'outcome=success',
});
assert(post.status === 403, `POST ${untokened.href} answered ${post.status}, not 403`);
console.log('sandbox checkout: clicking Pay made the order paid; without ?token= the page answers 403');
