// The spending policy as the agent meets it through the proxy: allow is
// forwarded; deny (403), hold (402 with an approval id) and malformed money
// fields (400) come back in Stripe's error shape, and none of them reaches the
// rail. Rule details have unit tests (tests/unit/test_policy.c); this file
// checks the wiring and the "nothing forwarded" promise end to end.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import Stripe from 'stripe';

import {
    makeTmp, newToken, startMockrail, startPayguard, configObject, writeConfig, httpRail,
    testWithLogs, stripeShapedError, headerValues,
} from './lib/harness.mjs';
import { request } from './lib/http.mjs';

let pg;
let mock;
const tok = {};
const test = testWithLogs(() => pg);

before(async () => {
    const dir = await makeTmp('policy');
    for (const a of ['capped', 'approving', 'reader']) tok[a] = await newToken(a);
    mock = await startMockrail();
    const cfg = configObject(dir, {
        rails: { stripe: httpRail(mock.url) },
        policies: {
            capped: {
                currency: 'usd',
                per_transaction: '50.00',
                currencies: ['usd'],
                merchants: { allow: ['acct_1Trusted*'], deny: ['acct_1TrustedButBanned'] },
                operations: ['payment', 'read'],
            },
            approving: { currency: 'usd', approval_above: '20.00', auto_approve_below: '5.00' },
        },
        agents: [
            { id: 'capped', org: 'acme', token: tok.capped.hash, rails: ['stripe'], policy: 'capped' },
            { id: 'approving', org: 'acme', token: tok.approving.hash, rails: ['stripe'], policy: 'approving' },
            // No policy at all: reads only.
            { id: 'reader', org: 'acme', token: tok.reader.hash, rails: ['stripe'], policy: undefined },
        ],
    });
    const file = await writeConfig(dir, cfg);
    pg = await startPayguard(file, { env: { MOCK_STRIPE_SECRET: mock.secret } });
});
after(async () => {
    pg?.kill();
    await mock?.stop();
});

const FORM = 'application/x-www-form-urlencoded';

function pay(agent, body, { path = '/v1/payment_intents', method = 'POST' } = {}) {
    return request(pg.port, {
        method, path, body,
        headers: { Authorization: `Bearer ${tok[agent].token}`, 'Content-Type': FORM, 'Idempotency-Key': `it-${randomUUID()}` },
    });
}

/* Runs `fn`, which must be refused with status/code, and checks the rail saw nothing. */
async function refused(fn, status, code) {
    const before = await mock.count();
    const res = await fn();
    stripeShapedError(assert, res, status, code);
    assert.equal(await mock.count(), before, `the rail saw nothing (${code})`);
    return res;
}

test('allowed payments are forwarded; the per-transaction limit is inclusive, one cent more is denied', async () => {
    const before = await mock.count();
    const shop = 'transfer_data[destination]=acct_1TrustedShop';
    const ok = await pay('capped', `amount=5000&currency=usd&${shop}`);
    assert.equal(ok.status, 200, ok.body);
    assert.equal(ok.json.amount, 5000);
    assert.equal(await mock.count(), before + 1);
    const res = await refused(() => pay('capped', `amount=5001&currency=usd&${shop}`), 403, 'payguard_per_transaction_limit');
    assert.equal(res.json.error.type, 'invalid_request_error');
    assert.match(res.json.error.message, /50\.00|5000/, `the message names the limit: ${res.json.error.message}`);
});

test('a currency outside the policy: 403 payguard_currency_not_allowed', async () => {
    await refused(() => pay('capped', 'amount=100&currency=eur'), 403, 'payguard_currency_not_allowed');
});

test('an operation kind the policy does not list: 403 payguard_operation_not_allowed', async () => {
    await refused(() => pay('capped', 'charge=ch_123&amount=100', { path: '/v1/refunds' }), 403, 'payguard_operation_not_allowed');
});

test('merchant lists: an unlisted or denied counterparty is refused, a listed one passes', async () => {
    await refused(() => pay('capped', 'amount=100&currency=usd&transfer_data[destination]=acct_1Evil'),
                  403, 'payguard_merchant_not_allowed');
    await refused(() => pay('capped', 'amount=100&currency=usd&transfer_data[destination]=acct_1TrustedButBanned'),
                  403, 'payguard_merchant_denied');
    const ok = await pay('capped', 'amount=100&currency=usd&transfer_data[destination]=acct_1TrustedShop');
    assert.equal(ok.status, 200, ok.body);
});

test('forbidden operations are refused even under a policy with no rules', async () => {
    const { token } = tok.approving;
    await refused(() => request(pg.port, { method: 'DELETE', path: '/v1/webhook_endpoints/we_123',
                                           headers: { Authorization: `Bearer ${token}` } }),
                  403, 'payguard_forbidden_operation');
});

test('malformed money fields are refused with a 400 naming the problem', async () => {
    await refused(() => pay('approving', 'amount=12.5&currency=usd'), 400, 'payguard_invalid_amount');
    await refused(() => pay('approving', 'amount=100&amount=100000&currency=usd'), 400, 'payguard_duplicate_field');
    await refused(() => pay('approving', 'amount=-1&currency=usd'), 400, 'payguard_invalid_amount');
    await refused(() => pay('approving', 'currency=usd'), 400, 'payguard_missing_amount');
    await refused(() => pay('approving', 'amount=100&currency=usd', { path: '/v1/payment_intents?amount=999999' }),
                  400, 'payguard_query_on_money_route');
});

test('above approval_above: 402 hold with an approval id in body and header, nothing forwarded; below it: forwarded', async () => {
    const before = await mock.count();
    const res = await pay('approving', 'amount=2500&currency=usd');
    assert.equal(res.status, 402, res.body);
    assert.equal(res.headers['payguard-decision'], 'hold');
    assert.equal(res.headers['payguard-reason'], 'approval_required');
    assert.equal(res.json.error.type, 'card_error', 'stripe-node raises StripeCardError for it');
    assert.equal(res.json.error.code, 'payguard_approval_required');
    const id = res.headers['payguard-approval-id'];
    assert.match(id ?? '', /^apr_[0-9A-Za-z]+$/, `Payguard-Approval-Id: ${id}`);
    assert.ok(JSON.stringify(res.json).includes(id), `the body carries the approval id too: ${res.body}`);
    assert.equal(await mock.count(), before, 'a held payment does not reach the rail');

    const small = await pay('approving', 'amount=1500&currency=usd');
    assert.equal(small.status, 200, small.body);
    assert.equal(await mock.count(), before + 1);
});

test('through the Stripe SDK: a deny raises StripePermissionError, a hold StripeCardError', async () => {
    const before = await mock.count();
    const sdk = (t) => new Stripe(t, { host: '127.0.0.1', port: pg.port, protocol: 'http', maxNetworkRetries: 0 });
    await assert.rejects(sdk(tok.capped.token).paymentIntents.create({ amount: 9000, currency: 'usd' },
                                                                      { idempotencyKey: `sdk-${randomUUID()}` }),
        (err) => {
            assert.ok(err instanceof Stripe.errors.StripePermissionError, `got ${err?.constructor?.name}: ${err?.message}`);
            assert.equal(err.code, 'payguard_per_transaction_limit');
            return true;
        });
    await assert.rejects(sdk(tok.approving.token).paymentIntents.create({ amount: 9000, currency: 'usd' },
                                                                         { idempotencyKey: `sdk-${randomUUID()}` }),
        (err) => {
            assert.ok(err instanceof Stripe.errors.StripeCardError, `got ${err?.constructor?.name}: ${err?.message}`);
            assert.equal(err.code, 'payguard_approval_required');
            assert.match(err.headers['payguard-approval-id'] ?? '', /^apr_/);
            return true;
        });
    assert.equal(await mock.count(), before, 'the rail saw nothing');
});

test('the request log carries the decision and the reason', async () => {
    /* each log line is written just after its answer */
    await pg.waitEvent((e) => e.agent === 'approving' && e.status === 402, 'the hold\'s log line');
    const logs = pg.requestLogs();
    const denied = logs.find((l) => l.agent === 'capped' && l.reason === 'per_transaction_limit' && l.amount === 5001);
    assert.ok(denied, 'a log line for the per-transaction denial');
    assert.equal(denied.decision, 'deny');
    assert.equal(denied.operation, 'payment');
    assert.equal(denied.amount, 5001);
    assert.equal(denied.currency, 'usd');
    const held = logs.find((l) => l.agent === 'approving' && l.status === 402);
    assert.ok(held, 'a log line for the hold');
    assert.equal(held.decision, 'hold');
    assert.match(held.approval_id ?? '', /^apr_/);
    const allowed = logs.find((l) => l.agent === 'capped' && l.status === 200 && l.amount === 5000);
    assert.equal(allowed?.decision, 'allow');
});

test('agent without a policy may read but not pay', async () => {
    const read = await request(pg.port, { path: '/v1/balance', headers: { Authorization: `Bearer ${tok.reader.token}` } });
    assert.equal(read.status, 200, read.body);
    await refused(() => pay('reader', 'amount=100&currency=usd'), 403, 'payguard_operation_not_allowed');
});

test('payguard stops cleanly on SIGTERM', async () => {
    const { code, signal } = await pg.stop();
    assert.equal(signal, null, pg.tail());
    assert.equal(code, 0, `exit code ${code} (86 = leak under ASan)\n${pg.tail(80)}`);
});
