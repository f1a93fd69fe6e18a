// The sandbox checkout page in headless Chromium: a customer opens the
// payment URL, clicks Pay, and the order becomes paid.
//
//   node checkout.mjs BASE_URL ADMIN_TOKEN SCREENSHOT_DIR
import { chromium } from 'playwright-core';

const [base, token, screenshots] = process.argv.slice(2);
if (!base || !token || !screenshots) {
  console.error('usage: node checkout.mjs BASE_URL ADMIN_TOKEN SCREENSHOT_DIR');
  process.exit(2);
}

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
  { userId: 'browser-user', items: [{ productId: product.productId, quantity: 1 }] });
const payment = await api('POST', '/api/v1/payments', { orderId: order.orderId, paymentMethod: 'wechat_pay' });
console.log(`order ${order.orderId}, payment ${payment.paymentId}: ${payment.paymentUrl}`);

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
  await page.goto(payment.paymentUrl);
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
  status = (await api('GET', `/api/v1/orders/${order.orderId}`)).status;
  if (status === 'paid') break;
  await new Promise((resolve) => setTimeout(resolve, 100));
}
assert(status === 'paid', `the order is ${status}, not paid`);
const paid = await api('GET', `/api/v1/payments/${payment.paymentId}`);
assert(paid.status === 'succeeded', `the payment is ${paid.status}`);
console.log('sandbox checkout: clicking Pay made the order paid');
