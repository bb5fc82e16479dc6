// Budgets through the real proxy: limits are checked on fresh spend inside
// the ledger's write transaction (200 concurrent payments against room for
// 100 let exactly 100 through), and the rail's answer settles each
// reservation: a decline gives the budget back, a 5xx or a timeout keeps it
// pending, a retry after a timeout reaches the rail under the same derived
// key and reserves nothing twice. `payguard ledger show` reports it.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

import {
    makeTmp, newToken, startMockrail, startPayguard, configObject, writeConfig, httpRail,
    testWithLogs, stripeShapedError, headerValues, sleep, PAYGUARD_BIN,
} from './lib/harness.mjs';
import { request } from './lib/http.mjs';
import { derivedKey, pay, railPosts, ledgerShow, parseWindow, FORM } from './lib/ledger.mjs';

const RAIL_TIMEOUT_MS = 800;

let pg;
let mock;
let flaky;                 // a second mock rail, stopped mid-test
let file;
const tok = {};
const test = testWithLogs(() => pg);

const AGENTS = {
    crowd: 'crowd',        // daily 1000.00: the concurrency test
    quick: 'quick',        // velocity 5 per minute
    weekly: 'weekly',      // weekly 50.00 only
    follower: 'settling',  // follow-ups: confirm, capture, cancel
    restarter: 'settling', // answers stored across a restart
    unlucky: 'small',      // daily 20.00, on a rail that goes away
    refunder: 'restoring', // daily 25.00, refunds_restore: true
    keeper: 'keeping',     // daily 25.00, refunds give nothing back
    refunds: 'small',      // daily 20.00: refunds of a payment made elsewhere
    grower: 'small',       // daily 20.00: an intent's amount raised by an update
    decliner: 'settling',  // daily 6000.00: declines are voided
    failer: 'settling',    // daily 6000.00: 5xx stays pending
    waiter: 'small',       // daily 20.00, on the slow rail: timeouts stay pending
};

before(async () => {
    const dir = await makeTmp('ledger');
    for (const a of Object.keys(AGENTS)) tok[a] = await newToken(a);
    mock = await startMockrail();
    flaky = await startMockrail({ secret: mock.secret });
    const cfg = configObject(dir, {
        limits: { max_connections: 2000 },
        rails: {
            stripe: httpRail(mock.url),
            slow: httpRail(mock.url, { timeout_ms: RAIL_TIMEOUT_MS }),
            flaky: httpRail(flaky.url, { timeout_ms: RAIL_TIMEOUT_MS }),
        },
        policies: {
            crowd: { currency: 'usd', daily: '1000.00' },
            settling: { currency: 'usd', daily: '6000.00' },
            small: { currency: 'usd', daily: '20.00' },
            quick: { currency: 'usd', velocity: { max: 5, per: '1m' } },
            weekly: { currency: 'usd', weekly: '50.00' },
            restoring: { currency: 'usd', daily: '25.00', refunds_restore: true },
            keeping: { currency: 'usd', daily: '25.00' },
        },
        agents: Object.entries(AGENTS).map(([id, policy]) => ({
            id, org: 'acme', token: tok[id].hash, policy,
            rails: { waiter: ['slow'], unlucky: ['flaky'] }[id] ?? ['stripe'],
        })),
    });
    file = await writeConfig(dir, cfg);
    pg = await startPayguard(file, { env: { MOCK_STRIPE_SECRET: mock.secret } });
    for (const a of Object.keys(AGENTS)) {
        const r = await request(pg.port, { path: '/v1/balance', headers: { Authorization: `Bearer ${tok[a].token}` } });
        assert.equal(r.status, 200, r.body);
    }
});
after(async () => {
    pg?.kill();
    await mock?.stop();
    await flaky?.stop();
});

const key = () => `it-${randomUUID()}`;
const runFile = promisify(execFile);
const payAs = (agent, body, k = key(), opts) => pay(pg.port, tok[agent].token, body, k, opts);

test('200 concurrent payments of 10.00 against a daily limit of 1000.00: exactly 100 pass and reach the rail, 100 are denied daily_limit', async () => {
    const n0 = (await mock.requests()).length;
    const keys = Array.from({ length: 200 }, key);
    const all = await Promise.all(keys.map((k) => payAs('crowd', 'amount=1000&currency=usd', k)));
    const ok = all.filter((r) => r.status === 200);
    const denied = all.filter((r) => r.status === 403);
    const other = all.filter((r) => r.status !== 200 && r.status !== 403);
    assert.deepEqual(other.map((r) => `${r.status} ${r.body}`).slice(0, 5), [], 'nothing but 200 and 403');
    assert.equal(ok.length, 100, `passed: ${ok.length}`);
    assert.equal(denied.length, 100, `denied: ${denied.length}`);
    for (const r of denied) stripeShapedError(assert, r, 403, 'payguard_daily_limit');

    const posts = await railPosts(mock, n0);
    assert.equal(posts.length, 100, 'exactly the 100 allowed payments reached the rail');
    const okKeys = new Set(keys.filter((_, i) => all[i].status === 200).map((k) => derivedKey('crowd', k)));
    const railKeys = new Set(posts.map((r) => headerValues(r, 'Idempotency-Key')[0]));
    assert.deepEqual([...railKeys].sort(), [...okKeys].sort(), 'the rail saw exactly the allowed ones');

    // The budget is full: one cent more is denied, and the view agrees.
    const more = await payAs('crowd', 'amount=1&currency=usd');
    stripeShapedError(assert, more, 403, 'payguard_daily_limit');
    const show = await ledgerShow(file, 'crowd');
    assert.equal(show.code, 0, show.text);
    const day = parseWindow(show.stdout, 'daily');
    assert.ok(day, `a daily line in:\n${show.stdout}`);
    assert.equal((day.posted ?? 0) + (day.pending ?? 0), 100000, `posted + pending is 1000.00: ${day.line}`);
    assert.equal(day.limit, 100000, day.line);
    assert.equal(day.headroom, 0, day.line);
});

test('velocity is checked on fresh counts too: 20 concurrent payments against 5 per minute let exactly 5 through', async () => {
    const n0 = (await mock.requests()).length;
    const all = await Promise.all(Array.from({ length: 20 }, () => payAs('quick', 'amount=100&currency=usd')));
    assert.equal(all.filter((r) => r.status === 200).length, 5, JSON.stringify(all.map((r) => r.status)));
    for (const r of all.filter((x) => x.status !== 200)) stripeShapedError(assert, r, 403, 'payguard_velocity_limit');
    assert.equal((await railPosts(mock, n0)).length, 5);
});

test('a weekly limit alone: 5 payments of 10.00 fit in 50.00, the 6th is denied weekly_limit', async () => {
    for (let i = 0; i < 5; i++) assert.equal((await payAs('weekly', 'amount=1000&currency=usd')).status, 200);
    const before = await mock.count();
    stripeShapedError(assert, await payAs('weekly', 'amount=1000&currency=usd'), 403, 'payguard_weekly_limit');
    assert.equal(await mock.count(), before);
});

test('follow-ups settle the reservation of the object they name: confirm + capture post it, cancel voids it', async () => {
    const n0 = (await mock.requests()).length;
    // 5000.00 authorized (created, manual capture), then confirmed, then captured.
    const pi = await payAs('follower', 'amount=500000&currency=usd&capture_method=manual');
    assert.equal(pi.status, 200, pi.body);
    const confirmed = await payAs('follower', 'payment_method=pm_card_visa', key(), { path: `/v1/payment_intents/${pi.json.id}/confirm` });
    assert.equal(confirmed.status, 200, confirmed.body);
    assert.equal(confirmed.json.status, 'requires_capture');
    let day = parseWindow((await ledgerShow(file, 'follower')).stdout, 'daily');
    assert.deepEqual([day?.posted, day?.pending], [0, 500000], `authorized, still pending: ${day?.line}`);
    const captured = await payAs('follower', '', key(), { path: `/v1/payment_intents/${pi.json.id}/capture` });
    assert.equal(captured.status, 200, captured.body);
    assert.equal(captured.json.status, 'succeeded');
    day = parseWindow((await ledgerShow(file, 'follower')).stdout, 'daily');
    assert.deepEqual([day?.posted, day?.pending], [500000, 0], `captured: posted: ${day?.line}`);

    // 1000.00 more is all that is left; a created-then-canceled intent gives it back.
    const other = await payAs('follower', 'amount=100000&currency=usd');
    assert.equal(other.status, 200, other.body);
    stripeShapedError(assert, await payAs('follower', 'amount=1&currency=usd'), 403, 'payguard_daily_limit');
    const canceled = await payAs('follower', '', key(), { path: `/v1/payment_intents/${other.json.id}/cancel` });
    assert.equal(canceled.status, 200, canceled.body);
    assert.equal(canceled.json.status, 'canceled');
    day = parseWindow((await ledgerShow(file, 'follower')).stdout, 'daily');
    assert.deepEqual([day?.posted, day?.pending], [500000, 0], `canceled: voided: ${day?.line}`);
    const again = await payAs('follower', 'amount=100000&currency=usd');
    assert.equal(again.status, 200, `the canceled 1000.00 is available again: ${again.body}`);
    assert.equal((await railPosts(mock, n0)).length, 6, 'create, confirm, capture, create, cancel, create');
});

test('refunds give budget back only with refunds_restore: true', async () => {
    for (const [agent, restores] of [['refunder', true], ['keeper', false]]) {
        // 20.00 posted of 25.00.
        const pi = await payAs(agent, 'amount=2000&currency=usd&confirm=true&payment_method=pm_card_visa');
        assert.equal(pi.status, 200, pi.body);
        assert.equal(pi.json.status, 'succeeded');
        const re = await payAs(agent, `payment_intent=${pi.json.id}&amount=500`, key(), { path: '/v1/refunds' });
        assert.equal(re.status, 200, re.body);
        assert.equal(re.json.object, 'refund');
        const day = parseWindow((await ledgerShow(file, agent)).stdout, 'daily');
        assert.equal(day?.posted, restores ? 1500 : 2000, `${agent}: ${day?.line}`);
        // 10.00 fits only if the refund gave 5.00 back.
        const next = await payAs(agent, 'amount=1000&currency=usd');
        if (restores) assert.equal(next.status, 200, `${agent}: the refunded 5.00 is available again: ${next.body}`);
        else stripeShapedError(assert, next, 403, 'payguard_daily_limit');
    }
});

test('refunds use no budget of their own: two refunds of 15.00 under a daily 20.00 both reach the rail', async () => {
    // A 100.00 payment made outside payguard, refunded through it.
    const direct = await fetch(`${mock.url}/v1/payment_intents`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${mock.secret}`, 'Content-Type': FORM },
        body: 'amount=10000&currency=usd&confirm=true&payment_method=pm_card_visa',
    }).then((r) => r.json());
    assert.equal(direct.status, 'succeeded');
    const before = await mock.count();
    const first = await payAs('refunds', `payment_intent=${direct.id}&amount=1500`, key(), { path: '/v1/refunds' });
    assert.equal(first.status, 200, first.body);
    const second = await payAs('refunds', `payment_intent=${direct.id}&amount=1500`, key(), { path: '/v1/refunds' });
    assert.equal(second.status, 200, second.body);
    assert.equal(await mock.count(), before + 2, 'both refunds reached the rail');
    // The refunds took nothing from the day: a payment of the whole 20.00 still fits.
    const pay = await payAs('refunds', 'amount=2000&currency=usd');
    assert.equal(pay.status, 200, pay.body);
    stripeShapedError(assert, await payAs('refunds', 'amount=1&currency=usd'), 403, 'payguard_daily_limit');
});

test('an update that raises an intent\'s amount is checked for the difference and grows its reservation', async () => {
    const pi = await payAs('grower', 'amount=1000&currency=usd');
    assert.equal(pi.status, 200, pi.body);
    const before = await mock.count();
    const tooMuch = await payAs('grower', 'amount=2001&currency=usd', key(), { path: `/v1/payment_intents/${pi.json.id}` });
    stripeShapedError(assert, tooMuch, 403, 'payguard_daily_limit');
    assert.equal(await mock.count(), before, 'the rail saw nothing');
    const grown = await payAs('grower', 'amount=2000&currency=usd', key(), { path: `/v1/payment_intents/${pi.json.id}` });
    assert.equal(grown.status, 200, grown.body);
    assert.equal(grown.json.amount, 2000);
    const day = parseWindow((await ledgerShow(file, 'grower')).stdout, 'daily');
    assert.equal((day?.posted ?? 0) + (day?.pending ?? 0), 2000, `one reservation of 20.00: ${day?.line}`);
    stripeShapedError(assert, await payAs('grower', 'amount=1&currency=usd'), 403, 'payguard_daily_limit');
});

test('a declined payment gives its budget back: after a 402 from the rail, a payment that only fits without it passes', async () => {
    const n0 = (await mock.requests()).length;
    const decline = await payAs('decliner', 'amount=402402&currency=usd');
    assert.equal(decline.status, 402, decline.body);
    assert.equal(decline.json.error.code, 'card_declined', 'the rail\'s decline');
    // Posted: confirmed with a card, the rail says succeeded.
    const posted = await payAs('decliner', 'amount=100000&currency=usd&confirm=true&payment_method=pm_card_visa');
    assert.equal(posted.status, 200, posted.body);
    assert.equal(posted.json.status, 'succeeded');
    // Pending: created, not confirmed (requires_payment_method).
    const pending = await payAs('decliner', 'amount=500000&currency=usd');
    assert.equal(pending.status, 200, `6000.00 fits only if the 4024.02 decline was voided: ${pending.body}`);
    assert.equal(pending.json.status, 'requires_payment_method');
    assert.equal((await railPosts(mock, n0)).length, 3);

    const more = await payAs('decliner', 'amount=1&currency=usd');
    stripeShapedError(assert, more, 403, 'payguard_daily_limit');
    assert.equal((await railPosts(mock, n0)).length, 3, 'the denied one did not reach the rail');

    const show = await ledgerShow(file, 'decliner');
    assert.equal(show.code, 0, show.text);
    const day = parseWindow(show.stdout, 'daily');
    assert.ok(day, `a daily line in:\n${show.stdout}`);
    assert.equal(day.posted, 100000, `posted 1000.00: ${day.line}`);
    assert.equal(day.pending, 500000, `pending 5000.00: ${day.line}`);
    assert.equal(day.limit, 600000, day.line);
    assert.equal(day.headroom, 0, day.line);
    assert.ok(show.stdout.includes(pending.json.id) || /5000\.00|500000/.test(show.stdout),
              `the pending reservation is listed:\n${show.stdout}`);
});

test('a 500 from the rail keeps the payment pending: the next payment that only fits without it is denied', async () => {
    const n0 = (await mock.requests()).length;
    const boom = await payAs('failer', 'amount=500500&currency=usd');
    assert.equal(boom.status, 500, boom.body);
    const tooMuch = await payAs('failer', 'amount=99501&currency=usd');
    stripeShapedError(assert, tooMuch, 403, 'payguard_daily_limit');
    const exact = await payAs('failer', 'amount=99500&currency=usd');
    assert.equal(exact.status, 200, `5005.00 pending + 995.00 = 6000.00 fits: ${exact.body}`);
    assert.equal((await railPosts(mock, n0)).length, 2);

    const show = await ledgerShow(file, 'failer');
    assert.equal(show.code, 0, show.text);
    const day = parseWindow(show.stdout, 'daily');
    assert.ok(day, `a daily line in:\n${show.stdout}`);
    assert.equal(day.posted ?? 0, 0, day.line);
    assert.equal(day.pending, 600000, `pending 5005.00 + 995.00: ${day.line}`);
});

test('a rail timeout keeps the payment pending; the retry reaches the rail under the same derived key and reserves nothing twice', async () => {
    const n0 = (await mock.requests()).length;
    const k = key();
    const body = 'amount=1000&currency=usd';
    const t = await payAs('waiter', body, k, { headers: { 'X-Mock-Delay-Ms': String(RAIL_TIMEOUT_MS * 3) } });
    stripeShapedError(assert, t, 504, 'payguard_rail_timeout');
    // Pending: 10.00 of 20.00 used, so 10.01 does not fit.
    stripeShapedError(assert, await payAs('waiter', 'amount=1001&currency=usd'), 403, 'payguard_daily_limit');

    // The 504 was not stored: the retry goes to the rail again, same derived key.
    const retry = await payAs('waiter', body, k);
    assert.equal(retry.status, 200, retry.body);
    const posts = await railPosts(mock, n0);
    assert.equal(posts.length, 2, 'the first attempt and the retry');
    assert.deepEqual(posts.map((r) => headerValues(r, 'Idempotency-Key')[0]),
                     [derivedKey('waiter', k), derivedKey('waiter', k)]);
    assert.equal(retry.headers['idempotent-replayed'], 'true', 'the rail deduplicated the retry (its own replay header)');

    // One reservation of 10.00, not two: another 10.00 still fits, then nothing.
    const second = await payAs('waiter', 'amount=1000&currency=usd');
    assert.equal(second.status, 200, second.body);
    stripeShapedError(assert, await payAs('waiter', 'amount=1&currency=usd'), 403, 'payguard_daily_limit');
    // The settled retry replays from the ledger now.
    const n1 = (await mock.requests()).length;
    const replay = await payAs('waiter', body, k);
    assert.equal(replay.status, 200);
    assert.equal(replay.json.id, retry.json.id);
    const flags = replay.rawHeaders.filter((_, i) => i % 2 === 0 && /^idempotent-replayed$/i.test(replay.rawHeaders[i]));
    assert.equal(flags.length, 1, `one Idempotent-Replayed header: ${JSON.stringify(replay.rawHeaders)}`);
    await sleep(20);
    assert.equal((await mock.requests()).length, n1, 'a replay does not call the rail');
});

test('a retry of an unresolved payment that fails before the rail this time keeps the first attempt counted', async () => {
    const k = key();
    const body = 'amount=1500&currency=usd';
    // The first attempt reaches the rail, which creates the payment, but answers too late.
    const t1 = await payAs('unlucky', body, k, { headers: { 'X-Mock-Delay-Ms': String(RAIL_TIMEOUT_MS * 3) } });
    stripeShapedError(assert, t1, 504, 'payguard_rail_timeout');
    assert.equal((await railPosts(flaky)).length, 1, 'the first attempt reached the rail');
    // The rail goes away; the retry cannot reach it.
    await flaky.stop();
    const t2 = await payAs('unlucky', body, k);
    stripeShapedError(assert, t2, 502, 'payguard_rail_unreachable');
    // The first attempt may have moved 15.00: it must still count.
    const day = parseWindow((await ledgerShow(file, 'unlucky')).stdout, 'daily');
    assert.equal((day?.posted ?? 0) + (day?.pending ?? 0), 1500,
                 `15.00 still counted after the failed retry: ${day?.line}`);
    const other = await payAs('unlucky', 'amount=1000&currency=usd');
    stripeShapedError(assert, other, 403, 'payguard_daily_limit');
});

test('after a restart on the same data_dir: stored answers replay, spend is still counted', async () => {
    const [k1, k2] = [key(), key()];
    const declined = await payAs('restarter', 'amount=402402&currency=usd', k1);
    assert.equal(declined.status, 402, declined.body);
    const paid = await payAs('restarter', 'amount=590000&currency=usd', k2);
    assert.equal(paid.status, 200, paid.body);
    const { code } = await pg.stop();
    assert.equal(code, 0, pg.tail(40));
    pg = await startPayguard(file, { env: { MOCK_STRIPE_SECRET: mock.secret } });
    const before = await mock.count();
    for (const [k, body, first] of [[k1, 'amount=402402&currency=usd', declined], [k2, 'amount=590000&currency=usd', paid]]) {
        const replay = await payAs('restarter', body, k);
        assert.equal(replay.status, first.status);
        assert.equal(replay.headers['idempotent-replayed'], 'true');
        assert.equal(replay.body, first.body);
    }
    // 5900.00 of 6000.00 still counted; crowd's full day too.
    stripeShapedError(assert, await payAs('restarter', 'amount=10001&currency=usd'), 403, 'payguard_daily_limit');
    stripeShapedError(assert, await payAs('crowd', 'amount=1&currency=usd'), 403, 'payguard_daily_limit');
    assert.equal(await mock.count(), before, 'the rail saw nothing');
});

test('`payguard ledger show` without --agent lists every agent; it runs while payguard serves', async () => {
    const show = await ledgerShow(file);
    assert.equal(show.code, 0, show.text);
    for (const a of Object.keys(AGENTS)) assert.ok(show.stdout.includes(a), `${a} in:\n${show.stdout}`);
    assert.ok(!show.stdout.includes(tok.crowd.token), 'no token in the view');
    const res = await request(pg.port, { path: '/v1/balance', headers: { Authorization: `Bearer ${tok.crowd.token}` } });
    assert.equal(res.status, 200, 'payguard still serves after the CLI read its data_dir');
});

test('ledger.settle_before_answer: true: when the agent has its answer, the settlement is already on disk', async () => {
    const dir = await makeTmp('ledger-strict');
    const t = await newToken('strict');
    const cfg = configObject(dir, {
        rails: { stripe: httpRail(mock.url) },
        policies: { strict: { currency: 'usd', daily: '100.00' } },
        agents: [{ id: 'strict', org: 'acme', token: t.hash, policy: 'strict', rails: ['stripe'] }],
    });
    cfg.ledger = { settle_before_answer: true };
    const strictFile = await writeConfig(dir, cfg);
    const strict = await startPayguard(strictFile, { env: { MOCK_STRIPE_SECRET: mock.secret } });
    try {
        for (let i = 1; i <= 5; i++) {
            const r = await pay(strict.port, t.token, 'amount=1000&currency=usd&confirm=true&payment_method=pm_card_visa', key());
            assert.equal(r.status, 200, r.body);
            assert.equal(r.json.status, 'succeeded');
            // Read at once from another process, without waiting for the ledger.
            const { stdout } = await runFile(PAYGUARD_BIN, ['ledger', 'show', '-c', strictFile, '--agent', 'strict']);
            const day = parseWindow(stdout, 'daily');
            assert.deepEqual([day?.posted, day?.pending ?? 0], [1000 * i, 0], `payment ${i} already posted: ${day?.line}`);
        }
    } finally {
        strict.kill();
        await strict.waitExit();
    }
});

test('payguard stops cleanly on SIGTERM', async () => {
    const { code, signal } = await pg.stop();
    assert.equal(signal, null, pg.tail());
    assert.equal(code, 0, `exit code ${code} (86 = leak under ASan)\n${pg.tail(80)}`);
});
