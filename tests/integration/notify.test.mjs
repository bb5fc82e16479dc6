// Webhooks out, end to end: real payguard, the mock rail, and HTTPS
// receivers on 127.0.0.1 with a certificate from a CA this test makes
// (payguard trusts it through webhooks[].ca_file; url_guard lets loopback
// and the receivers' ports through). Signatures are checked with the npm
// `standardwebhooks` package, an implementation independent of payguard's.
// Every wait polls for a condition with a bound; nothing depends on timing.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import https from 'node:https';

import { Webhook } from 'standardwebhooks';

import {
    makeTmp, makeTls, newToken, startMockrail, startPayguard, configObject, writeConfig,
    httpRail, testWithLogs, closedPort, waitFor, WAIT_MS,
} from './lib/harness.mjs';
import { pay, approvalsList, approvalsDecide, cli } from './lib/ledger.mjs';

const LONG = WAIT_MS * 6; // a retry is due 4-6 s after a failed attempt

let pg;
let mock;
let file;
let dir;
let env;
let tls;
let receiver;      // /main, /redir, /gone
let target;        // where /redir points: must never be called
let later;         // /later: down at first, up after a restart
let laterPort;
const tok = {};
const secret = `whsec_${randomBytes(32).toString('base64')}`;
const oldSecret = `whsec_${randomBytes(24).toString('base64')}`;
const test = testWithLogs(() => pg);
let goneAnswer = 410; // what /gone answers

/* An HTTPS receiver that records every request; `answer(req)` picks the
 * status and headers. */
async function startReceiver(port, answer = () => ({ status: 200 })) {
    const got = [];
    const srv = https.createServer({ cert: await fs.readFile(tls.cert), key: await fs.readFile(tls.key) },
        (req, res) => {
            const chunks = [];
            req.on('data', (c) => chunks.push(c));
            req.on('end', () => {
                got.push({ path: req.url, method: req.method, headers: req.headers,
                           body: Buffer.concat(chunks).toString('utf8') });
                const a = answer(req);
                res.writeHead(a.status, a.headers ?? {});
                res.end(a.body ?? '');
            });
        });
    await new Promise((r, j) => { srv.once('error', j); srv.listen(port, '127.0.0.1', r); });
    return {
        got, port: srv.address().port,
        on: (p) => got.filter((g) => g.path === p),
        close: () => new Promise((r) => { srv.closeAllConnections?.(); srv.close(r); }),
    };
}

const parsed = (g) => JSON.parse(g.body);
const ofType = (list, type) => list.filter((g) => parsed(g).type === type);
const webhookLogs = (pred) => pg.events.filter((e) => e.msg === 'webhook' && pred(e));

before(async () => {
    dir = await makeTmp('notify');
    tls = await makeTls(dir);
    for (const a of ['holder', 'spender']) tok[a] = await newToken(a);
    mock = await startMockrail();
    target = await startReceiver(0);
    receiver = await startReceiver(0, (req) => {
        if (req.url === '/redir') return { status: 307, headers: { location: `https://127.0.0.1:${target.port}/target` } };
        if (req.url === '/gone') return { status: goneAnswer };
        return { status: 204 };
    });
    laterPort = await closedPort();
    const hook = (path, events, port = receiver.port, extra = {}) => ({
        url: `https://127.0.0.1:${port}${path}`, secret: 'env:PG_WH_SECRET', events,
        ca_file: tls.ca, ...extra,
    });
    const cfg = configObject(dir, {
        rails: { stripe: httpRail(mock.url) },
        policies: {
            holding: { currency: 'usd', approval_above: '20.00', per_transaction: '500.00' },
            budget: { currency: 'usd', per_transaction: '50.00', daily: '100.00' },
        },
        agents: [
            { id: 'holder', org: 'acme', token: tok.holder.hash, rails: ['stripe'], policy: 'holding' },
            { id: 'spender', org: 'acme', token: tok.spender.hash, rails: ['stripe'], policy: 'budget' },
        ],
    });
    cfg.url_guard = { ports: [443, receiver.port, laterPort], allow: ['127.0.0.1/32'] };
    cfg.webhooks = [
        hook('/main', ['approval.requested', 'approval.decided', 'budget.threshold', 'payment.denied'],
             receiver.port, { previous_secrets: ['env:PG_WH_OLD_SECRET'] }),
        hook('/later', ['approval.requested'], laterPort),
        hook('/redir', ['payment.denied']),
        hook('/gone', ['payment.denied']),
    ];
    file = await writeConfig(dir, cfg);
    env = { MOCK_STRIPE_SECRET: mock.secret, PG_WH_SECRET: secret, PG_WH_OLD_SECRET: oldSecret };
    pg = await startPayguard(file, { env });
});
after(async () => {
    pg?.kill();
    await mock?.stop();
    await receiver?.close();
    await target?.close();
    await later?.close();
});

const key = () => `it-${randomUUID()}`;

/* Checks a delivery with the standardwebhooks package: with the current
 * secret, and (for /main, which rotates) with the previous one too: both
 * signatures are sent. */
function verified(g, { rotated = true } = {}) {
    const headers = {
        'webhook-id': g.headers['webhook-id'],
        'webhook-timestamp': g.headers['webhook-timestamp'],
        'webhook-signature': g.headers['webhook-signature'],
    };
    const body = new Webhook(secret).verify(g.body, headers);
    if (rotated) assert.deepEqual(new Webhook(oldSecret).verify(g.body, headers), body);
    else assert.throws(() => new Webhook(oldSecret).verify(g.body, headers));
    assert.throws(() => new Webhook(`whsec_${randomBytes(32).toString('base64')}`).verify(g.body, headers));
    assert.throws(() => new Webhook(secret).verify(g.body.replace('acme', 'acmf'), headers),
                  'a changed body does not verify');
    return body;
}

let heldId;
let heldMsg;

test('a held payment → approval.requested, signed (verified by standardwebhooks), no secrets in it', async () => {
    const res = await pay(pg.port, tok.holder.token, 'amount=2500&currency=usd&customer=cus_1234567890123456', key());
    assert.equal(res.status, 402, res.body);
    heldId = res.headers['payguard-approval-id'];
    const g = await waitFor(() => ofType(receiver.on('/main'), 'approval.requested')
        .find((x) => parsed(x).data.approval_id === heldId), 'approval.requested at /main', LONG);
    assert.equal(g.method, 'POST');
    assert.match(g.headers['content-type'], /^application\/json/);
    assert.match(g.headers['webhook-id'], /^msg_[0-9A-Za-z]+$/);
    assert.match(g.headers['webhook-signature'], /^v1,\S+ v1,\S+$/);
    const body = verified(g);
    assert.equal(body.type, 'approval.requested');
    assert.match(body.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.equal(body.data.agent, 'holder');
    assert.equal(body.data.org, 'acme');
    assert.equal(body.data.amount, 2500);
    assert.equal(body.data.currency, 'usd');
    assert.equal(body.data.operation, 'payment');
    assert.equal(body.data.counterparty, 'cus_************3456', 'counterparties are masked');
    for (const s of [secret, oldSecret, mock.secret, tok.holder.token, '4242424242424242'])
        assert.ok(!g.body.includes(s), 'no secret or card number in the payload');
    heldMsg = g.headers['webhook-id'];
    // The receiver that is down: the first attempt fails and is retried.
    await waitFor(() => webhookLogs((e) => e.webhook_id === heldMsg && e.outcome === 'retry').length,
                  'a failed attempt at /later', LONG);
});

test('a human decides → approval.decided', async () => {
    const r = await approvalsDecide(file, 'approve', heldId, ['--as', 'ana']);
    assert.equal(r.code, 0, r.stderr);
    const g = await waitFor(() => ofType(receiver.on('/main'), 'approval.decided')
        .find((x) => parsed(x).data.approval_id === heldId), 'approval.decided at /main', LONG);
    const body = verified(g);
    assert.equal(body.data.decision, 'approved');
    assert.equal(body.data.decided_by, 'cli:ana');
});

test('a policy denial → payment.denied; a 3xx is not followed; a 410 disables its endpoint', async () => {
    const before = await mock.count();
    const res = await pay(pg.port, tok.holder.token, 'amount=60000&currency=usd', key());
    assert.equal(res.status, 403, res.body);
    assert.equal(await mock.count(), before, 'the rail saw nothing');
    const g = await waitFor(() => ofType(receiver.on('/main'), 'payment.denied')[0],
                            'payment.denied at /main', LONG);
    const body = verified(g);
    assert.equal(body.data.reason, 'per_transaction_limit');
    assert.equal(body.data.amount, 60000);
    const msg = g.headers['webhook-id'];

    // 307 at /redir: the attempt fails and the redirect target gets nothing.
    const redir = await waitFor(() => webhookLogs((e) => e.webhook_id === msg && e.status === 307)[0],
                                'the attempt at /redir', LONG);
    assert.equal(redir.outcome, 'retry');
    assert.equal(receiver.on('/redir').length, 1);
    assert.equal(target.got.length, 0, 'the redirect was not followed');

    // 410 at /gone: disabled.
    const gone = await waitFor(() => webhookLogs((e) => e.webhook_id === msg && e.status === 410)[0],
                               'the attempt at /gone', LONG);
    assert.equal(gone.outcome, 'disabled');
    assert.equal(receiver.on('/gone').length, 1);

    // The next denial reaches /main; /gone is never called again. Any
    // delivery of it to /gone would be due with /main's and attempted in the
    // same pass, before a later event could be.
    const res2 = await pay(pg.port, tok.holder.token, 'amount=70000&currency=usd', key());
    assert.equal(res2.status, 403);
    await waitFor(() => ofType(receiver.on('/main'), 'payment.denied').length === 2, 'the second denial', LONG);
    const res3 = await pay(pg.port, tok.holder.token, 'amount=80000&currency=usd', key());
    assert.equal(res3.status, 403);
    await waitFor(() => ofType(receiver.on('/main'), 'payment.denied').length === 3, 'the third denial', LONG);
    assert.equal(receiver.on('/gone').length, 1, 'a disabled endpoint gets nothing');
    assert.equal(target.got.length, 0);

    // A human lets it back from the CLI, while payguard runs; the next event reaches it.
    const list = await cli(['webhooks', 'list', '-c', file]);
    assert.equal(list.code, 0, list.text);
    const line = list.stdout.split('\n').find((l) => l.includes('/gone'));
    assert.match(line ?? '', /^ep_[0-9a-f]{16} .*disabled \(410\) since \d{4}-/, list.text);
    const id = line.split(' ')[0];
    assert.match(list.stdout.split('\n').find((l) => l.includes('/main')) ?? '', / active /, list.text);
    goneAnswer = 204;
    const en = await cli(['webhooks', 'enable', id, '-c', file, '--as', 'ana']);
    assert.equal(en.code, 0, en.text);
    const again = await cli(['webhooks', 'enable', id, '-c', file]);
    assert.equal(again.code, 1, `enabling twice: exit 1\n${again.text}`);
    assert.match(again.stderr, /is not disabled/);
    const res4 = await pay(pg.port, tok.holder.token, 'amount=90000&currency=usd', key());
    assert.equal(res4.status, 403);
    const back = await waitFor(() => ofType(receiver.on('/gone'), 'payment.denied').find((g) => parsed(g).data.amount === 90000),
                               'the event at /gone', LONG);
    assert.equal(receiver.on('/gone').length, 2, 'only the new event: none of those written while disabled');
    assert.equal(verified(back, { rotated: false }).data.amount, 90000);
});

test('budget.threshold fires once per threshold per window (0.5, 0.8, 1.0 of the daily limit)', async () => {
    for (let i = 0; i < 5; i++) {
        const res = await pay(pg.port, tok.spender.token, 'amount=2000&currency=usd', key());
        assert.equal(res.status, 200, res.body);
    }
    const crossed = () => ofType(receiver.on('/main'), 'budget.threshold')
        .filter((g) => parsed(g).data.agent === 'spender');
    await waitFor(() => crossed().length >= 3, 'three budget.threshold events', LONG);
    const got = crossed().map((g) => verified(g).data);
    assert.deepEqual(got.map((d) => d.threshold).sort(), [0.5, 0.8, 1]);
    for (const d of got) {
        assert.equal(d.window, 'day');
        assert.equal(d.limit, 10000);
        assert.equal(d.currency, 'usd');
    }
    assert.deepEqual(got.map((d) => d.spent).sort(), [10000, 6000, 8000].sort());
    // Over the limit now: a denial, and no threshold again.
    const res = await pay(pg.port, tok.spender.token, 'amount=2000&currency=usd', key());
    assert.equal(res.status, 403, res.body);
    await waitFor(() => ofType(receiver.on('/main'), 'payment.denied')
        .some((g) => parsed(g).data.agent === 'spender'), 'the over-limit denial', LONG);
    assert.equal(crossed().length, 3, 'each threshold once');
});

test('receiver down, payguard restarted, receiver up → delivered exactly once', async () => {
    assert.equal(later, undefined);
    const r = await pg.stop();
    assert.equal(r.code, 0, pg.tail());
    later = await startReceiver(laterPort);
    pg = await startPayguard(file, { env });
    const g = await waitFor(() => later.on('/later').find((x) => x.headers['webhook-id'] === heldMsg),
                            'the held approval at /later after the restart', LONG);
    assert.match(g.headers['webhook-signature'], /^v1,\S+$/, 'one secret, one signature');
    const body = verified(g, { rotated: false });
    assert.equal(body.type, 'approval.requested');
    assert.equal(body.data.approval_id, heldId);
    // Its delivery is recorded; a later event to the same endpoint is a barrier.
    await waitFor(() => webhookLogs((e) => e.webhook_id === heldMsg && e.outcome === 'delivered').length,
                  'the delivery recorded', LONG);
    const res = await pay(pg.port, tok.holder.token, 'amount=3000&currency=usd', key());
    assert.equal(res.status, 402);
    await waitFor(() => later.on('/later').length >= 2, 'the next event at /later', LONG);
    assert.equal(later.on('/later').filter((x) => x.headers['webhook-id'] === heldMsg).length, 1,
                 'exactly once');
    const list = await approvalsList(file);
    assert.equal(list.code, 0);
});
