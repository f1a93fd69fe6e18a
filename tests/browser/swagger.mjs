// Swagger UI in headless Chromium: it loads with nothing fetched beyond
// loopback, lists every operation of the API, and "Try it out" on
// getProductInfo (public) shows a 200. listOrders (a customer route) answers
// Try it out with a 401 until the customer's token is entered through the
// Authorize dialog (scheme customerToken); then it shows a 200 with the
// customer's order, and Swagger UI sent the token.
//
//   node swagger.mjs BASE_URL ADMIN_TOKEN SCREENSHOT_DIR CUSTOMER_TOKEN
import { chromium } from 'playwright-core';

const [base, token, screenshots, customerToken] = process.argv.slice(2);
if (!base || !token || !screenshots || !customerToken) {
  console.error('usage: node swagger.mjs BASE_URL ADMIN_TOKEN SCREENSHOT_DIR CUSTOMER_TOKEN');
  process.exit(2);
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

// The status code Try it out shows in an operation's live response
// (waiting until it is `want`, when given, or any code).
async function liveStatus(block, want) {
  const cell = block.locator('.live-responses-table .response .response-col_status').first();
  await cell.waitFor({ timeout: 15000 });
  let code = '';
  for (let i = 0; i < 150; i++) {
    code = (await cell.textContent()).trim();
    if (code && (!want || code.startsWith(want))) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return code.split(/\s/)[0];
}

// The operations of DESIGN section 4.
const expected = [
  ['GET', '/api/v1/products', 'listProducts'],
  ['POST', '/api/v1/products', 'createProduct'],
  ['GET', '/api/v1/products/{productId}', 'getProductInfo'],
  ['PUT', '/api/v1/products/{productId}/stock', 'updateProductStock'],
  ['POST', '/api/v1/orders', 'createOrder'],
  ['GET', '/api/v1/orders/{orderId}', 'getOrderInfo'],
  ['GET', '/api/v1/orders', 'listOrders'],
  ['POST', '/api/v1/orders/{orderId}/cancel', 'cancelOrder'],
  ['POST', '/api/v1/payments', 'initiatePayment'],
  ['GET', '/api/v1/payments/{paymentId}', 'getPayment'],
  ['POST', '/api/v1/payments/notify', 'paymentResultNotify'],
];

const created = await fetch(`${base}/api/v1/products`, {
  method: 'POST',
  headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
  body: JSON.stringify({ name: 'Swagger lamp', price: 12900, currency: 'CNY', stock: 3 }),
});
assert(created.status === 201, `createProduct: ${created.status}`);
const product = await created.json();
// The customer's order, for listOrders to show.
const ordered = await fetch(`${base}/api/v1/orders`, {
  method: 'POST',
  headers: { 'content-type': 'application/json', authorization: `Bearer ${customerToken}` },
  body: JSON.stringify({ items: [{ productId: product.productId, quantity: 1 }] }),
});
assert(ordered.status === 201, `createOrder: ${ordered.status}`);
const order = await ordered.json();

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1600 } });
  const outside = [];
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (!['http:', 'https:'].includes(url.protocol)) return; // data: URIs and the like
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) outside.push(request.url());
  });
  await page.goto(`${base}/swagger-ui/`);
  await page.waitForSelector('.opblock', { timeout: 15000 });

  const listed = await page.$$eval('.opblock', (blocks) => blocks.map((block) => [
    block.querySelector('.opblock-summary-method')?.textContent.trim(),
    block.querySelector('.opblock-summary-path')?.getAttribute('data-path'),
  ]));
  for (const [method, path, operationId] of expected) {
    assert(listed.some(([m, p]) => m === method && p === path), `${operationId} (${method} ${path}) is not listed`);
  }
  console.log(`Swagger UI lists ${listed.length} operations, every one of DESIGN section 4 among them`);
  await page.screenshot({ path: `${screenshots}/swagger-ui.png` });

  // Try it out: getProductInfo.
  const block = page.locator('#operations-products-getProductInfo');
  await block.locator('.opblock-summary').first().click();
  await block.locator('button.try-out__btn').click();
  await block.locator('input[placeholder="productId"]').fill(product.productId);
  await block.locator('button.execute').click();
  const status = block.locator('.live-responses-table .response .response-col_status').first();
  await status.waitFor({ timeout: 15000 });
  const code = (await status.textContent()).trim();
  assert(code.startsWith('200'), `Try it out answered ${code}`);
  const body = await block.locator(".live-responses-table").first().innerText();
  assert(body.includes(product.productId), 'the response shows the product');
  await block.scrollIntoViewIfNeeded();
  await page.screenshot({ path: `${screenshots}/swagger-ui-try-it-out.png`, fullPage: true });
  console.log('Swagger UI: Try it out on getProductInfo answered 200');

  // Try it out: listOrders, first without credentials (401), ...
  const sent = [];
  page.on('request', (request) => {
    if (new URL(request.url()).pathname === '/api/v1/orders' && request.method() === 'GET') {
      sent.push(request.headers().authorization);
    }
  });
  const orders = page.locator('#operations-orders-listOrders');
  await orders.locator('.opblock-summary').first().click();
  await orders.locator('button.try-out__btn').click();
  // A customer lists their own orders from the start: no userId and no cursor
  // (Swagger UI fills in the schema's examples: userId names another user,
  // which would be a 403 user_mismatch).
  // The filters are cleared too: their examples (a product, dates) would
  // narrow the list to nothing.
  for (const name of ['userId', 'cursor', 'status', 'productId', 'createdFrom', 'createdTo']) {
    await orders.locator(`input[placeholder="${name}"]`).fill('');
  }
  await orders.locator('button.execute').click();
  assert((await liveStatus(orders)) === '401', 'listOrders without a token answers 401');

  // ... then with the customer's token, entered through Authorize.
  await page.locator('.scheme-container button.authorize, button.btn.authorize').first().click();
  const dialog = page.locator('.dialog-ux .modal-ux');
  await dialog.waitFor({ timeout: 15000 });
  const schemes = await dialog.locator('.auth-container h4').allInnerTexts();
  for (const name of ['customerToken', 'adminToken']) {
    assert(schemes.some((s) => s.includes(name)), `the Authorize dialog offers ${name}: ${schemes.join(' | ')}`);
  }
  const customer = dialog.locator('.auth-container').filter({ has: page.locator('h4', { hasText: 'customerToken' }) });
  await customer.locator('input').first().fill(customerToken);
  await page.screenshot({ path: `${screenshots}/swagger-ui-authorize.png` });
  await customer.locator('button.authorize').click();
  await customer.locator('h6', { hasText: 'Authorized' }).waitFor({ timeout: 5000 }); // it shows Authorized (and offers Logout)
  await dialog.locator('button.close-modal').click();
  await dialog.waitFor({ state: 'detached', timeout: 5000 });

  await orders.locator('button.execute').click();
  const authorized = await liveStatus(orders, '200');
  assert(authorized === '200', `listOrders with the customer's token answered ${authorized}`);
  const listedBody = await orders.locator('.live-responses-table').first().innerText();
  assert(listedBody.includes(order.orderId), 'the response shows the customer\'s order');
  assert(sent.length === 2 && sent[0] === undefined && sent[1] === `Bearer ${customerToken}`,
    `Swagger UI sent Authorization ${JSON.stringify(sent)}`);
  await orders.screenshot({ path: `${screenshots}/swagger-ui-authorized-try-it-out.png` });
  assert(outside.length === 0, `requests left loopback: ${outside.join(', ')}`);
  console.log('Swagger UI: listOrders answered 401 without a token, 200 with the customer token from Authorize');
} finally {
  await browser.close();
}
