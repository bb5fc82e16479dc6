// Crash safety: a few agents pay steadily (each payment its own key, retried
// under the same key on any error until a definite answer) while payguard is
// killed with SIGKILL at random moments and restarted on the same data_dir
// and ports. At the end the rail charged no more than the daily limit, every
// charge the rail saw is one the agent was told succeeded and one the ledger
// counts, and the audit chain verifies. The schedule comes from a seeded
// PRNG: CRASH_SEED=N replays it (the seed is printed).
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import {
    makeTmp, newToken, startMockrail, startPayguard, configObject, writeConfig, httpRail,
    testWithLogs, closedPort, headerValues, sleep, MODE,
} from './lib/harness.mjs';
import { request } from './lib/http.mjs';
import {
    derivedKey, pay, ledgerShow, parseWindow, auditVerify, auditExport, verifyChain, prng,
} from './lib/ledger.mjs';

const KILLS = Number(process.env.CRASH_KILLS ?? 22);
const CLIENTS = 4;
const AMOUNT = 1000;                 // 10.00 usd per payment
const LIMIT = 600000;                // daily 6000.00: room for 600 payments, reached mid-run
const SEED = Number(process.env.CRASH_SEED ?? (Date.now() % 2147483647));
const BUDGET_MS = 75000;             // the whole test, start to end

let mock;
let pg;                              // the current payguard
let file;
let token;
let drainer;
const runs = [];                     // every payguard we started
const test = testWithLogs(() => pg);

before(async () => {
    const dir = await makeTmp('crash');
    token = await newToken('steady');
    drainer = await newToken('drainer');
    mock = await startMockrail();
    const cfg = configObject(dir, {
        rails: { stripe: httpRail(mock.url, { timeout_ms: 3000 }) },
        policies: { steady: { currency: 'usd', daily: (LIMIT / 100).toFixed(2) } },
        agents: [
            { id: 'steady', org: 'acme', token: token.hash, rails: ['stripe'], policy: 'steady' },
            { id: 'drainer', org: 'acme', token: drainer.hash, rails: ['stripe'] },
        ],
    });
    // Fixed ports, so clients reconnect to the restarted payguard.
    cfg.listen = { agents: `127.0.0.1:${await closedPort()}`, admin: `127.0.0.1:${await closedPort()}` };
    file = await writeConfig(dir, cfg);
});
after(async () => {
    for (const r of runs) r.kill();
    await mock?.stop();
});

async function start() {
    let lastErr;
    for (let i = 0; i < 20; i++) {
        try {
            pg = await startPayguard(file, { env: { MOCK_STRIPE_SECRET: mock.secret } });
            runs.push(pg);
            return pg;
        } catch (e) {
            lastErr = e; // the port may still be held for a moment
            await sleep(100);
        }
    }
    throw lastErr;
}

test(`${KILLS} SIGKILLs under steady payments: no double charge, nothing charged the ledger does not know, the chain verifies`, { timeout: BUDGET_MS + 30000 }, async (t) => {
    const t0 = Date.now();
    t.diagnostic(`CRASH_SEED=${SEED} (set it to replay this schedule)`);
    console.log(`# crash test: CRASH_SEED=${SEED}`);
    const rnd = prng(SEED);
    await start();
    const port = pg.port;

    // --- the agents ---------------------------------------------------------
    const outcomes = new Map();      // key → {status, code, attempts, id}
    let stopNew = false;             // no new payments after this
    let giveUp = false;              // stop retrying too (deadline)
    const stats = { attempts: 0, errors: 0, retryStatuses: {} };
    const clientRnd = Array.from({ length: CLIENTS }, (_, i) => prng(SEED + 1 + i));

    async function client(i) {
        const r = clientRnd[i];
        while (!stopNew && !giveUp) {
            const key = `crash-${i}-${randomUUID()}`;
            const o = { status: null, code: null, attempts: 0 };
            outcomes.set(key, o);
            while (!giveUp) {
                o.attempts++;
                stats.attempts++;
                let res;
                try {
                    // A short stay at the rail widens the window between the
                    // ledger's reservation and its settlement, where a kill hurts most.
                    res = await pay(port, token.token, `amount=${AMOUNT}&currency=usd`, key,
                                    { timeoutMs: 5000, headers: { 'X-Mock-Delay-Ms': String(Math.floor(r() * 40)) } });
                } catch {
                    stats.errors++;
                    await sleep(10 + r() * 30);
                    continue;
                }
                if (res.status === 200 || (res.status === 403 && res.json?.error?.code === 'payguard_daily_limit')
                    || (res.status >= 400 && res.status < 500 && res.status !== 409 && res.status !== 429)) {
                    o.status = res.status;
                    o.code = res.json?.error?.code ?? null;
                    o.id = res.json?.id;
                    break;
                }
                stats.retryStatuses[res.status] = (stats.retryStatuses[res.status] ?? 0) + 1;
                await sleep(10 + r() * 30);
            }
            await sleep(r() * 20);
        }
    }
    const clients = Array.from({ length: CLIENTS }, (_, i) => client(i));

    // --- the crashes ----------------------------------------------------------
    const exits = [];
    const deadline = t0 + BUDGET_MS * 0.6;
    let kills = 0;
    for (; kills < KILLS && Date.now() < deadline; kills++) {
        await sleep(100 + rnd() * 500);
        pg.kill();
        exits.push(await pg.waitExit());
        await start();
    }

    // --- let the budget run out, then let every key resolve ---------------------
    const fillEnd = Math.min(Date.now() + 10000, t0 + BUDGET_MS * 0.8);
    while (Date.now() < fillEnd && ![...outcomes.values()].some((o) => o.status === 403)) await sleep(50);
    stopNew = true;
    const settleEnd = t0 + BUDGET_MS * 0.9;
    while (Date.now() < settleEnd && [...outcomes.values()].some((o) => o.status === null)) await sleep(50);
    giveUp = true;
    await Promise.all(clients);

    const all = [...outcomes.entries()];
    const ok = all.filter(([, o]) => o.status === 200);
    const denied = all.filter(([, o]) => o.status === 403);
    const unresolved = all.filter(([, o]) => o.status === null);
    const other = all.filter(([, o]) => o.status !== null && o.status !== 200 && o.status !== 403);
    const summary = `seed ${SEED}, mode ${MODE}: ${kills} kills, ${all.length} keys: ${ok.length} paid, ${denied.length} denied, `
        + `${unresolved.length} unresolved, ${other.length} other; ${stats.attempts} attempts, ${stats.errors} connection errors, `
        + `retried statuses ${JSON.stringify(stats.retryStatuses)}; ${Date.now() - t0} ms`;
    t.diagnostic(summary);
    console.log(`# ${summary}`);

    assert.ok(kills >= 20, `at least 20 kills (${kills}); ${summary}`);
    assert.ok(exits.every((e) => e.signal === 'SIGKILL'), `each run died of SIGKILL, none on its own: ${JSON.stringify(exits.filter((e) => e.signal !== 'SIGKILL'))}`);
    assert.deepEqual(other.map(([k, o]) => `${k}: ${o.status} ${o.code}`), [], 'only 200s and daily_limit denials');
    assert.deepEqual(unresolved.map(([k, o]) => `${k} after ${o.attempts} attempts`), [],
                     `every key got a definite answer in the end (${summary})`);
    assert.ok(denied.length > 0, `the limit was reached (${summary})`);

    // --- what the rail charged --------------------------------------------------
    const railReqs = (await mock.requests()).filter((r) => r.method === 'POST' && r.path === '/v1/payment_intents');
    const railKeys = new Set();
    for (const r of railReqs) {
        const ks = headerValues(r, 'Idempotency-Key');
        assert.equal(ks.length, 1, 'one key per rail request');
        assert.match(ks[0], /^pg_[A-Za-z0-9_-]{43}$/, 'a derived key');
        railKeys.add(ks[0]);
    }
    const charged = railKeys.size * AMOUNT;
    assert.ok(charged <= LIMIT, `the rail charged ${charged} > limit ${LIMIT} (${summary})`);
    const okDerived = new Set(ok.map(([k]) => derivedKey('steady', k)));
    const deniedButCharged = denied.filter(([k]) => railKeys.has(derivedKey('steady', k))).map(([k]) => k);
    assert.deepEqual(deniedButCharged, [], 'no agent was told "denied" for a payment the rail made');
    assert.deepEqual([...okDerived].filter((k) => !railKeys.has(k)), [], 'every 200 the agent got was a rail charge');
    assert.deepEqual([...railKeys].filter((k) => !okDerived.has(k)), [], 'every rail charge was answered 200 to the agent in the end');
    const ids = new Set(ok.map(([, o]) => o.id));
    assert.equal(ids.size, ok.length, 'one payment intent per paid key');

    // --- what the ledger says -----------------------------------------------------
    const show = await ledgerShow(file, 'steady');
    assert.equal(show.code, 0, show.text);
    const day = parseWindow(show.stdout, 'daily');
    assert.ok(day, `a daily line in:\n${show.stdout}`);
    const counted = (day.posted ?? 0) + (day.pending ?? 0);
    assert.ok(counted >= charged, `the ledger counts ${counted}, the rail charged ${charged}: ${day.line}`);
    assert.ok(counted <= LIMIT, `the ledger counts ${counted} > limit ${LIMIT}: ${day.line}`);

    // --- a clean stop, then the chain ---------------------------------------------
    const { code, signal } = await pg.stop();
    assert.equal(signal, null, pg.tail());
    assert.equal(code, 0, `exit code ${code} (86 = leak under ASan)\n${pg.tail(80)}`);
    const v = await auditVerify(file);
    assert.equal(v.code, 0, v.text);
    const ex = await auditExport(file);
    assert.equal(ex.code, 0, ex.text);
    assert.deepEqual(verifyChain(ex.lines).problems.slice(0, 5), [], 'the exported chain verifies');
    assert.equal(ex.lines.length, v.orgs.acme?.entries, v.stdout);
    // How often a kill fell between a reservation and its settlement (the
    // retry then re-sent under the same rail key): reported, not asserted.
    const resent = ex.entries.filter((e) => e?.reason === 'unresolved_retry').length;
    const railDup = railReqs.length - railKeys.size;
    t.diagnostic(`${resent} retries of unresolved keys re-sent to the rail; ${railDup} rail requests were repeats of a key`);
    console.log(`# crash test: ${resent} unresolved retries re-sent, ${railDup} repeated rail keys, ${ex.lines.length} audit entries`);
});

test('SIGTERM while a payment is at the rail: it is answered, settled and stored before exit; after a restart the retry replays it', async () => {
    if (pg && !pg.exited()) await pg.stop(); // the test above failed half-way
    await start();
    const n0 = (await mock.requests()).length;
    const k = `drain-${randomUUID()}`;
    const body = 'amount=4200&currency=usd';
    const inflight = pay(pg.port, drainer.token, body, k, { headers: { 'X-Mock-Delay-Ms': '800' } });
    for (let i = 0; i < 300 && (await mock.requests()).length === n0; i++) await sleep(10);
    assert.equal((await mock.requests()).length, n0 + 1, 'the payment reached the rail');
    pg.signal('SIGTERM');
    const res = await inflight;
    assert.equal(res.status, 200, res.body);
    const { code, signal } = await pg.waitExit();
    assert.equal(signal, null, pg.tail());
    assert.equal(code, 0, `exit code ${code} (86 = leak under ASan)\n${pg.tail(80)}`);

    await start();
    const again = await pay(pg.port, drainer.token, body, k);
    assert.equal(again.status, 200, again.body);
    assert.equal(again.headers['idempotent-replayed'], 'true', 'answered from the ledger');
    assert.equal(again.body, res.body);
    assert.equal((await mock.requests()).length, n0 + 1, 'the rail saw one request');
    const stop = await pg.stop();
    assert.equal(stop.code, 0, pg.tail(80));
});
