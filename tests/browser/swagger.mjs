// Swagger UI in headless Chromium: it loads with nothing fetched beyond
// loopback, lists every operation of the API, and "Try it out" on
// getProductInfo shows a 200.
//
//   node swagger.mjs BASE_URL ADMIN_TOKEN SCREENSHOT_DIR
import { chromium } from 'playwright-core';

const [base, token, screenshots] = process.argv.slice(2);
if (!base || !token || !screenshots) {
  console.error('usage: node swagger.mjs BASE_URL ADMIN_TOKEN SCREENSHOT_DIR');
  process.exit(2);
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
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
  assert(outside.length === 0, `requests left loopback: ${outside.join(', ')}`);
  console.log('Swagger UI: Try it out on getProductInfo answered 200');
} finally {
  await browser.close();
}
