// Approvals end to end: a hold answers 402 with an approval id and sends
// nothing; `payguard approvals list/approve/deny` (run against the live
// data_dir) decide it; the agent's retry with the same Idempotency-Key then
// goes through exactly once (limits still apply), or gets 403 when denied.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import Stripe from 'stripe';

import {
    makeTmp, newToken, startMockrail, startPayguard, configObject, writeConfig, httpRail,
    testWithLogs, stripeShapedError, headerValues, sleep,
} from './lib/harness.mjs';
import { request } from './lib/http.mjs';
import { derivedKey, pay, railPosts, approvalsList, approvalsDecide } from './lib/ledger.mjs';

let pg;
let mock;
let file;
const tok = {};
const test = testWithLogs(() => pg);

before(async () => {
    const dir = await makeTmp('approvals');
    for (const a of ['approving', 'tight', 'outsider']) tok[a] = await newToken(a);
    mock = await startMockrail();
    const cfg = configObject(dir, {
        rails: { stripe: httpRail(mock.url) },
        orgs: { acme: { timezone: 'UTC' }, globex: { timezone: 'UTC' } },
        policies: {
            approving: { currency: 'usd', approval_above: '20.00', daily: '1000.00' },
            tight: { currency: 'usd', approval_above: '20.00', daily: '30.00' },
        },
        agents: [
            { id: 'approving', org: 'acme', token: tok.approving.hash, rails: ['stripe'], policy: 'approving' },
            { id: 'tight', org: 'acme', token: tok.tight.hash, rails: ['stripe'], policy: 'tight' },
            { id: 'outsider', org: 'globex', token: tok.outsider.hash, rails: ['stripe'], policy: 'approving' },
        ],
    });
    cfg.ledger = { approval_ttl: '90m' }; // a hold waits 90 minutes, not the default day
    file = await writeConfig(dir, cfg);
    pg = await startPayguard(file, { env: { MOCK_STRIPE_SECRET: mock.secret } });
});
after(async () => {
    pg?.kill();
    await mock?.stop();
});

const key = () => `it-${randomUUID()}`;
const payAs = (agent, body, k) => pay(pg.port, tok[agent].token, body, k);

/* A hold: 402 card_error payguard_approval_required with the id in header and body; the rail saw nothing. */
async function hold(agent, body, k) {
    const before = await mock.count();
    const res = await payAs(agent, body, k);
    assert.equal(res.status, 402, res.body);
    assert.equal(res.headers['payguard-decision'], 'hold');
    assert.equal(res.json.error.type, 'card_error');
    assert.equal(res.json.error.code, 'payguard_approval_required');
    const id = res.headers['payguard-approval-id'];
    assert.match(id ?? '', /^apr_[0-9A-Za-z]+$/);
    assert.equal(res.json.error.approval_id, id, `approval_id in the error body: ${res.body}`);
    await sleep(20);
    assert.equal(await mock.count(), before, 'a hold reaches nothing');
    return id;
}

test('hold → listed → approved → the retry with the same key goes through once; a second retry replays', async () => {
    const n0 = (await mock.requests()).length;
    const k = key();
    const body = 'amount=2500&currency=usd';
    const id = await hold('approving', body, k);

    // Retrying before anyone decided: still held, same approval, nothing sent.
    const id2 = await hold('approving', body, k);
    assert.equal(id2, id, 'the same approval, not a new one');

    const list = await approvalsList(file);
    assert.equal(list.code, 0, list.text);
    const line = list.stdout.split('\n').find((l) => l.includes(id));
    assert.ok(line, `${id} is listed:\n${list.stdout}`);
    assert.match(line, /approving/, `the agent is named: ${line}`);
    assert.match(line, /25\.00|2500/, `the amount is shown: ${line}`);
    const [, created, expires] = /created (\S+)\s+expires (\S+)/.exec(line) ?? [];
    assert.equal(Date.parse(expires) - Date.parse(created), 90 * 60 * 1000,
                 `ledger.approval_ttl sets the expiry: ${line}`);
    const byOrg = await approvalsList(file, ['--org', 'globex']);
    assert.equal(byOrg.code, 0, byOrg.text);
    assert.ok(!byOrg.stdout.includes(id), `--org globex hides acme's approval:\n${byOrg.stdout}`);

    const ok = await approvalsDecide(file, 'approve', id, ['--note', 'looks fine', '--as', 'ana@acme.test']);
    assert.equal(ok.code, 0, ok.text);
    const again = await approvalsDecide(file, 'approve', id);
    assert.equal(again.code, 1, `approving twice: exit 1\n${again.text}`);
    const after = await approvalsList(file);
    assert.ok(!after.stdout.includes(id), `no longer pending:\n${after.stdout}`);
    const all = await approvalsList(file, ['--all']);
    assert.ok(all.stdout.split('\n').some((l) => l.includes(id) && /approved|used/i.test(l)),
              `--all shows it decided:\n${all.stdout}`);

    const res = await payAs('approving', body, k);
    assert.equal(res.status, 200, res.body);
    assert.equal(res.json.amount, 2500);
    const posts = await railPosts(mock, n0);
    assert.equal(posts.length, 1, 'the rail saw exactly one request');
    assert.deepEqual(headerValues(posts[0], 'Idempotency-Key'), [derivedKey('approving', k)]);

    const replay = await payAs('approving', body, k);
    assert.equal(replay.status, 200);
    assert.equal(replay.headers['idempotent-replayed'], 'true');
    assert.equal(replay.json.id, res.json.id);
    assert.equal((await railPosts(mock, n0)).length, 1, 'still one');
});

test('an approval is bound to its request: the same key with another body is an idempotency_error', async () => {
    const k = key();
    const id = await hold('approving', 'amount=2600&currency=usd', k);
    assert.equal((await approvalsDecide(file, 'approve', id)).code, 0);
    const before = await mock.count();
    const res = await payAs('approving', 'amount=99999&currency=usd', k);
    stripeShapedError(assert, res, 400, 'payguard_idempotency_mismatch');
    assert.equal(res.json.error.type, 'idempotency_error');
    assert.equal(await mock.count(), before, 'the rail saw nothing');
});

test('a new key for the same payment is a new hold (an approval is not a blank cheque)', async () => {
    const k = key();
    const id = await hold('approving', 'amount=2700&currency=usd', k);
    assert.equal((await approvalsDecide(file, 'approve', id)).code, 0);
    const other = await hold('approving', 'amount=2700&currency=usd', key());
    assert.notEqual(other, id);
});

test('denied: the retry gets 403 payguard_approval_denied and the rail saw nothing', async () => {
    const k = key();
    const body = 'amount=2800&currency=usd';
    const id = await hold('approving', body, k);
    const d = await approvalsDecide(file, 'deny', id, ['--note', 'not today', '--as', 'ana@acme.test']);
    assert.equal(d.code, 0, d.text);
    assert.equal((await approvalsDecide(file, 'approve', id)).code, 1, 'a denied approval cannot be approved');
    const before = await mock.count();
    for (let i = 0; i < 2; i++) {
        const res = await payAs('approving', body, k);
        stripeShapedError(assert, res, 403, 'payguard_approval_denied');
    }
    assert.equal(await mock.count(), before, 'the rail saw nothing');
});

test('unknown approval ids: exit 1', async () => {
    for (const verb of ['approve', 'deny']) {
        const r = await approvalsDecide(file, verb, 'apr_doesnotexist000000');
        assert.equal(r.code, 1, r.text);
    }
});

test('an approved payment still has to fit the limits when it is retried', async () => {
    const n0 = (await mock.requests()).length;
    const k = key();
    const id = await hold('tight', 'amount=2500&currency=usd', k);
    // Meanwhile a small payment uses 10.00 of the 30.00.
    const small = await payAs('tight', 'amount=1000&currency=usd', key());
    assert.equal(small.status, 200, small.body);
    assert.equal((await approvalsDecide(file, 'approve', id)).code, 0);
    const res = await payAs('tight', 'amount=2500&currency=usd', k);
    stripeShapedError(assert, res, 403, 'payguard_daily_limit');
    assert.equal((await railPosts(mock, n0)).length, 1, 'only the small payment reached the rail');
});

test('through the Stripe SDK: the hold raises StripeCardError with the approval id; after approval the same call succeeds', async () => {
    const stripe = new Stripe(tok.approving.token, { host: '127.0.0.1', port: pg.port, protocol: 'http', maxNetworkRetries: 0 });
    const k = `sdk-${randomUUID()}`;
    let id;
    await assert.rejects(stripe.paymentIntents.create({ amount: 3000, currency: 'usd' }, { idempotencyKey: k }), (err) => {
        assert.ok(err instanceof Stripe.errors.StripeCardError, `got ${err?.constructor?.name}: ${err?.message}`);
        assert.equal(err.code, 'payguard_approval_required');
        id = err.headers['payguard-approval-id'];
        assert.equal(err.raw.approval_id, id);
        return true;
    });
    assert.equal((await approvalsDecide(file, 'approve', id)).code, 0);
    const pi = await stripe.paymentIntents.create({ amount: 3000, currency: 'usd' }, { idempotencyKey: k });
    assert.equal(pi.amount, 3000);
    assert.match(pi.id, /^pi_/);
});

test('approvals are durable: held, payguard stopped, approved offline, restarted: the retry goes through once', async () => {
    const k = key();
    const body = 'amount=3100&currency=usd';
    const id = await hold('approving', body, k);
    const { code } = await pg.stop();
    assert.equal(code, 0, pg.tail(40));
    const list = await approvalsList(file);
    assert.ok(list.stdout.includes(id), `still pending while payguard is down:\n${list.text}`);
    assert.equal((await approvalsDecide(file, 'approve', id)).code, 0);
    pg = await startPayguard(file, { env: { MOCK_STRIPE_SECRET: mock.secret } });
    const n0 = (await mock.requests()).length;
    const res = await payAs('approving', body, k);
    assert.equal(res.status, 200, res.body);
    const again = await payAs('approving', body, k);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.equal((await railPosts(mock, n0)).length, 1);
});

test('payguard stops cleanly on SIGTERM', async () => {
    const { code, signal } = await pg.stop();
    assert.equal(signal, null, pg.tail());
    assert.equal(code, 0, `exit code ${code} (86 = leak under ASan)\n${pg.tail(80)}`);
});
