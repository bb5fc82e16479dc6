// The official Stripe SDK (npm `stripe`, pinned in tests/package.json) as a
// real agent: pointed at payguard with its own pgt_ token as the API key, it
// works unmodified, and payguard's answers raise the SDK's usual errors.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import Stripe from 'stripe';

import { startStack, testWithLogs, headerValue, headerValues, closedPort, httpRail } from './lib/harness.mjs';
import { derivedKey } from './lib/ledger.mjs';

let s;
const test = testWithLogs(() => s?.pg);

before(async () => {
    const down = await closedPort();
    s = await startStack('stripe-sdk', {
        limits: { auth_failures: 1000 },
        rails: async () => ({ down: httpRail(`http://127.0.0.1:${down}`) }),
    });
});
after(async () => {
    s?.pg.kill();
    await s?.mock.stop();
});

const sdk = (key) => new Stripe(key, {
    host: '127.0.0.1', port: s.pg.port, protocol: 'http', maxNetworkRetries: 0, timeout: 10000,
});

test('balance.retrieve() through payguard returns the rail\'s balance', async () => {
    const n0 = (await s.mock.requests()).length;
    const balance = await sdk(s.token.token).balance.retrieve();
    assert.equal(balance.object, 'balance');
    assert.ok(Array.isArray(balance.available));
    const [r] = (await s.mock.requests()).slice(n0);
    assert.equal(r.method, 'GET');
    assert.equal(r.path, '/v1/balance');
    assert.deepEqual(headerValues(r, 'Authorization'), [`Bearer ${s.mock.secret}`]);
    assert.ok(headerValue(r, 'Stripe-Version'), 'the SDK\'s Stripe-Version reached the rail');
    assert.match(headerValue(r, 'User-Agent') ?? '', /Stripe\/v1 NodeBindings/);
    for (const [, v] of r.headers) assert.ok(!v.includes(s.token.token), 'agent token reached the rail');
});

test('paymentIntents.create() with an idempotency key returns the rail\'s payment intent', async () => {
    const n0 = (await s.mock.requests()).length;
    const key = `sdk-${randomUUID()}`;
    const stripe = sdk(s.token.token);
    const pi = await stripe.paymentIntents.create({ amount: 2000, currency: 'usd' }, { idempotencyKey: key });
    assert.equal(pi.object, 'payment_intent');
    assert.equal(pi.amount, 2000);
    assert.equal(pi.currency, 'usd');
    assert.match(pi.id, /^pi_/);
    const [r] = (await s.mock.requests()).slice(n0);
    assert.equal(r.method, 'POST');
    assert.equal(r.path, '/v1/payment_intents');
    assert.equal(new URLSearchParams(r.body).get('amount'), '2000');
    assert.equal(new URLSearchParams(r.body).get('currency'), 'usd');
    assert.deepEqual(headerValues(r, 'Authorization'), [`Bearer ${s.mock.secret}`]);
    assert.deepEqual(headerValues(r, 'Idempotency-Key'), [derivedKey('shopper', key)],
                     'the rail gets the key payguard derives, never the agent\'s own');

    // Retrieving it by id goes through too.
    const again = await stripe.paymentIntents.retrieve(pi.id);
    assert.equal(again.id, pi.id);
    assert.equal(again.amount, 2000);
});

test('paymentIntents.create() twice with one idempotencyKey returns the same object; the rail saw one request', async () => {
    const n0 = (await s.mock.requests()).length;
    const stripe = sdk(s.token.token);
    const key = `sdk-${randomUUID()}`;
    const a = await stripe.paymentIntents.create({ amount: 2100, currency: 'usd' }, { idempotencyKey: key });
    const b = await stripe.paymentIntents.create({ amount: 2100, currency: 'usd' }, { idempotencyKey: key });
    assert.equal(b.id, a.id);
    assert.equal(b.lastResponse.headers['idempotent-replayed'], 'true');
    assert.equal(b.lastResponse.requestId, a.lastResponse.requestId, 'the same Request-Id');
    // stripe-node reports the answer's Idempotency-Key header as the key used:
    // it must be the agent's own, or a retry with it would reach the rail as a new payment.
    assert.equal(a.lastResponse.idempotencyKey, key);
    assert.equal(b.lastResponse.idempotencyKey, key);
    assert.equal((await s.mock.requests()).slice(n0).length, 1);
});

test('the same idempotencyKey with other parameters raises StripeIdempotencyError; the rail saw nothing more', async () => {
    const stripe = sdk(s.token.token);
    const key = `sdk-${randomUUID()}`;
    await stripe.paymentIntents.create({ amount: 2200, currency: 'usd' }, { idempotencyKey: key });
    const before = await s.mock.count();
    await assert.rejects(stripe.paymentIntents.create({ amount: 2201, currency: 'usd' }, { idempotencyKey: key }), (err) => {
        assert.ok(err instanceof Stripe.errors.StripeIdempotencyError, `got ${err?.constructor?.name}: ${err?.message}`);
        assert.equal(err.statusCode, 400);
        assert.equal(err.code, 'payguard_idempotency_mismatch');
        return true;
    });
    assert.equal(await s.mock.count(), before);
});

test('a payment without idempotencyKey: StripeInvalidRequestError naming Idempotency-Key; with SDK retries on, the SDK\'s own key is used', async () => {
    const before = await s.mock.count();
    await assert.rejects(sdk(s.token.token).paymentIntents.create({ amount: 2300, currency: 'usd' }), (err) => {
        assert.ok(err instanceof Stripe.errors.StripeInvalidRequestError, `got ${err?.constructor?.name}: ${err?.message}`);
        assert.equal(err.code, 'payguard_missing_idempotency_key');
        assert.equal(err.param, 'Idempotency-Key');
        return true;
    });
    assert.equal(await s.mock.count(), before, 'the rail saw nothing');
    // stripe-node adds "stripe-node-retry-<uuid>" to POSTs when it may retry.
    const retrying = new Stripe(s.token.token, { host: '127.0.0.1', port: s.pg.port, protocol: 'http', maxNetworkRetries: 1 });
    const pi = await retrying.paymentIntents.create({ amount: 2300, currency: 'usd' });
    assert.equal(pi.amount, 2300);
});

test('a wrong token raises StripeAuthenticationError; the rail saw nothing', async () => {
    const before = await s.mock.count();
    await assert.rejects(sdk('pgt_thisIsNotTheRightTokenAtAll0123456789abcd').balance.retrieve(), (err) => {
        assert.ok(err instanceof Stripe.errors.StripeAuthenticationError, `got ${err?.constructor?.name}: ${err?.message}`);
        assert.equal(err.type, 'StripeAuthenticationError');
        assert.equal(err.statusCode, 401);
        assert.equal(err.code, 'payguard_invalid_token');
        assert.equal(err.headers['payguard-decision'], 'deny');
        return true;
    });
    await assert.rejects(sdk(s.mock.secret).balance.retrieve(), Stripe.errors.StripeAuthenticationError,
                         'the rail\'s own key is no payguard token');
    assert.equal(await s.mock.count(), before, 'the rail saw nothing');
});

test('a declined card (amount 402402) raises StripeCardError from the rail', async () => {
    await assert.rejects(
        sdk(s.token.token).paymentIntents.create({ amount: 402402, currency: 'usd', payment_method: 'pm_card_visa', confirm: true },
                                                 { idempotencyKey: `sdk-${randomUUID()}` }),
        (err) => {
            assert.ok(err instanceof Stripe.errors.StripeCardError, `got ${err?.constructor?.name}: ${err?.message}`);
            assert.equal(err.type, 'StripeCardError');
            assert.equal(err.statusCode, 402);
            assert.equal(err.headers['payguard-decision'], undefined, 'this error is the rail\'s, not payguard\'s');
            return true;
        });
});

test('payguard\'s own answers raise the SDK\'s usual errors (403 → StripePermissionError, 502 → StripeAPIError)', async () => {
    const stripe = sdk(s.token.token);
    const before = await s.mock.count();
    await assert.rejects(stripe.balance.retrieve({}, { additionalHeaders: { 'Payguard-Rail': 'nosuchrail' } }), (err) => {
        assert.ok(err instanceof Stripe.errors.StripePermissionError, `got ${err?.constructor?.name}: ${err?.message}`);
        assert.equal(err.statusCode, 403);
        assert.equal(err.code, 'payguard_rail_not_allowed');
        return true;
    });
    await assert.rejects(stripe.balance.retrieve({}, { additionalHeaders: { 'Payguard-Rail': 'down' } }), (err) => {
        assert.ok(err instanceof Stripe.errors.StripeAPIError, `got ${err?.constructor?.name}: ${err?.message}`);
        assert.equal(err.statusCode, 502);
        assert.equal(err.code, 'payguard_rail_unreachable');
        return true;
    });
    assert.equal(await s.mock.count(), before, 'the rail saw nothing');
});

test('payguard stops cleanly on SIGTERM', async () => {
    const { code, signal } = await s.pg.stop();
    assert.equal(signal, null, s.pg.tail());
    assert.equal(code, 0, `exit code ${code} (86 = leak under ASan)\n${s.pg.tail(80)}`);
});
