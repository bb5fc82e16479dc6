// The audit chain (README, Audit): money decisions, their outcomes,
// approvals and denials each append one entry to the org's hash chain; reads
// do not. `payguard audit verify` walks it, `payguard audit export` writes it
// as JSON Lines that this file re-verifies with node:crypto alone. Then the
// data file is tampered with on disk and verify must name the entry.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

import {
    makeTmp, newToken, startMockrail, startPayguard, configObject, writeConfig, httpRail,
    testWithLogs, stripeShapedError,
} from './lib/harness.mjs';
import { request } from './lib/http.mjs';
import { pay, auditVerify, auditExport, verifyChain, approvalsDecide } from './lib/ledger.mjs';

let pg;
let mock;
let file;
let dataDir;
const tok = {};
const test = testWithLogs(() => pg);

// A distinctive amount: its digits appear in this file's audit entries only.
const MARK = 7331;
const PAN = '4242424242424242';

before(async () => {
    const dir = await makeTmp('audit');
    for (const a of ['auditee', 'globexer', 'payonly']) tok[a] = await newToken(a);
    mock = await startMockrail();
    const cfg = configObject(dir, {
        rails: { stripe: httpRail(mock.url) },
        orgs: { acme: { timezone: 'UTC' }, globex: { timezone: 'Europe/Paris' } },
        policies: {
            audited: { currency: 'usd', per_transaction: '500.00', approval_above: '100.00', daily: '2000.00' },
            payonly: { currency: 'usd', operations: ['payment', 'read'] },
        },
        agents: [
            { id: 'auditee', org: 'acme', token: tok.auditee.hash, rails: ['stripe'], policy: 'audited' },
            { id: 'globexer', org: 'globex', token: tok.globexer.hash, rails: ['stripe'], policy: 'audited' },
            { id: 'payonly', org: 'acme', token: tok.payonly.hash, rails: ['stripe'], policy: 'payonly' },
        ],
    });
    file = await writeConfig(dir, cfg);
    dataDir = cfg.data_dir;
    pg = await startPayguard(file, { env: { MOCK_STRIPE_SECRET: mock.secret } });
});
after(async () => {
    pg?.kill();
    await mock?.stop();
});

const key = () => `it-${randomUUID()}`;
const payAs = (agent, body, k = key(), opts) => pay(pg.port, tok[agent].token, body, k, opts);
const count = async (org) => (await auditExport(file, { org })).lines.length;

test('a session of allows, denials, a decline, a hold and its approval: audit verify exits 0 for each org', async () => {
    assert.equal((await payAs('auditee', `amount=${MARK}&currency=usd`)).status, 200);
    assert.equal((await payAs('auditee', 'amount=402402&currency=usd')).status, 403, 'over per_transaction');
    assert.equal((await payAs('auditee', 'amount=5000&currency=usd', key(), { path: '/v1/payouts' })).status, 200);
    const k = key();
    const held = await payAs('auditee', 'amount=20000&currency=usd', k);
    assert.equal(held.status, 402, held.body);
    assert.equal((await approvalsDecide(file, 'approve', held.headers['payguard-approval-id'], ['--as', 'ana@acme.test'])).code, 0);
    assert.equal((await payAs('auditee', 'amount=20000&currency=usd', k)).status, 200);
    assert.equal((await payAs('globexer', 'amount=5000&currency=usd')).status, 200);
    assert.equal((await payAs('globexer', 'amount=402402&currency=usd')).status, 403, 'over per_transaction');

    const v = await auditVerify(file);
    assert.equal(v.code, 0, v.text);
    assert.ok(v.orgs.acme, `a line for org acme:\n${v.stdout}`);
    assert.ok(v.orgs.globex, `a line for org globex:\n${v.stdout}`);
    assert.ok(v.orgs.acme.entries >= 6, `acme has an entry per decision and outcome: ${v.orgs.acme.entries}`);
    assert.equal(v.orgs.acme.headSeq, v.orgs.acme.entries, 'seq counts from 1 with no gaps');
    const one = await auditVerify(file, 'globex');
    assert.equal(one.code, 0, one.text);
    assert.deepEqual(Object.keys(one.orgs), ['globex'], one.stdout);
});

test('audit export re-verifies with node:crypto alone, and agrees with audit verify', async () => {
    const ex = await auditExport(file);
    assert.equal(ex.code, 0, ex.text);
    assert.ok(ex.lines.length > 0);
    const chk = verifyChain(ex.lines);
    assert.deepEqual(chk.problems, [], 'the exported chain verifies');
    const v = await auditVerify(file);
    for (const org of ['acme', 'globex']) {
        assert.equal(chk.orgs[org]?.count, v.orgs[org].entries, `${org}: entry count`);
        assert.equal(chk.orgs[org].headSeq, v.orgs[org].headSeq, `${org}: head seq`);
        assert.equal(chk.orgs[org].headHash, v.orgs[org].headHash, `${org}: head hash`);
    }
    // What an entry says.
    const mine = ex.entries.filter((e) => e.org === 'acme');
    for (const e of mine) {
        for (const f of ['seq', 'time', 'org', 'actor', 'action', 'prev_hash', 'hash']) assert.ok(f in e, `${f} in ${JSON.stringify(e)}`);
    }
    const marked = mine.filter((e) => e.amount === MARK);
    assert.ok(marked.length >= 1, 'the marked payment is audited');
    assert.ok(marked.some((e) => e.actor === 'agent:auditee'), `actor agent:auditee: ${JSON.stringify(marked)}`);
    assert.ok(mine.some((e) => e.reason === 'per_transaction_limit' || e.reason === 'payguard_per_transaction_limit'),
              'the denial is audited with its reason');
    assert.ok(mine.some((e) => /ana@acme\.test/.test(e.actor ?? '')), 'the approval is audited with the human who gave it');
    const raw = ex.lines.join('\n');
    for (const secret of [tok.auditee.token, tok.globexer.token, mock.secret]) {
        assert.ok(!raw.includes(secret), 'no token or rail secret in the audit log');
    }

    // --org and --since select; a partial export checks from its first prev_hash.
    const acme = await auditExport(file, { org: 'acme' });
    assert.ok(acme.entries.every((e) => e.org === 'acme'));
    assert.equal(acme.lines.length, chk.orgs.acme.count);
    const since = await auditExport(file, { org: 'acme', since: 3 });
    assert.equal(since.entries[0]?.seq, 3, since.stdout.slice(0, 300));
    assert.equal(since.lines.length, chk.orgs.acme.count - 2);
    assert.deepEqual(verifyChain(since.lines, { startPrev: { acme: since.entries[0].prev_hash } }).problems, []);
    assert.equal(since.lines[0], acme.lines[2], 'the same bytes as the full export');
});

test('reads are not audited; denials of money requests are, with a card number in the counterparty masked', async () => {
    const before = await count('acme');
    for (let i = 0; i < 3; i++) {
        const r = await request(pg.port, { path: '/v1/balance', headers: { Authorization: `Bearer ${tok.auditee.token}` } });
        assert.equal(r.status, 200);
    }
    assert.equal(await count('acme'), before, 'three reads, no entry');

    // A card number where a counterparty goes: refused over the limit, audited, masked.
    const denied = await payAs('auditee', `amount=60000&currency=usd&transfer_data[destination]=acct_${PAN}`);
    stripeShapedError(assert, denied, 403, 'payguard_per_transaction_limit');
    const ex = await auditExport(file, { org: 'acme' });
    assert.ok(ex.lines.length >= before + 1, `the denial is audited (${before} → ${ex.lines.length})`);
    const entry = ex.entries.slice(before).find((e) => e.action === 'deny' || /per_transaction/.test(e.reason ?? ''));
    assert.ok(entry, `a deny entry: ${ex.lines.slice(before).join('\n')}`);
    assert.ok(!ex.stdout.includes(PAN), 'the card number never reaches the audit log');
    assert.match(entry.counterparty ?? '', /4242$/, `masked to the last 4: ${JSON.stringify(entry)}`);
    assert.deepEqual(verifyChain(ex.lines).problems, []);

    // A config request (registering a webhook endpoint) the policy does not allow.
    const n = ex.lines.length;
    const cfgDenied = await payAs('payonly', 'url=https://hooks.example.com/x&enabled_events[]=*', key(),
                                  { path: '/v1/webhook_endpoints' });
    stripeShapedError(assert, cfgDenied, 403, 'payguard_operation_not_allowed');
    const after = await auditExport(file, { org: 'acme' });
    assert.ok(after.entries.slice(n).some((e) => e.agent === 'payonly' || e.actor === 'agent:payonly'),
              `the config denial is audited: ${after.lines.slice(n).join('\n')}`);
});

/* Every offset of `needle` in `buf`. */
function offsetsOf(buf, needle) {
    const out = [];
    for (let i = buf.indexOf(needle); i >= 0; i = buf.indexOf(needle, i + 1)) out.push(i);
    return out;
}

test('tampering: one byte changed inside an audit entry in data.mdb makes audit verify exit 1 naming that entry', async () => {
    const ex = await auditExport(file, { org: 'acme' });
    const target = ex.entries.find((e) => e.amount === MARK);
    assert.ok(target, 'the marked entry');
    const { code, signal } = await pg.stop();
    assert.equal(code, 0, `clean stop before tampering (signal ${signal})\n${pg.tail(40)}`);

    const mdb = path.join(dataDir, 'data.mdb');
    const buf = await fs.readFile(mdb);
    // Every copy of the marked amount, including stale pages LMDB kept: the
    // live one is among them. 7331 → 7332 keeps the JSON valid.
    const needle = Buffer.from(`"amount":${MARK},`);
    const at = offsetsOf(buf, needle);
    assert.ok(at.length > 0, 'the audit entries are stored as their canonical JSON text in data.mdb '
              + '(if they are not, this test must tamper another way)');
    for (const o of at) buf[o + needle.length - 2] ^= 0x01; // '1' (0x31) → '0' (0x30)
    await fs.writeFile(mdb, buf);

    const v = await auditVerify(file, 'acme');
    assert.equal(v.code, 1, `verify must fail after tampering:\n${v.text}`);
    const firstMarked = ex.entries.filter((e) => e.amount === MARK).map((e) => e.seq).sort((a, b) => a - b)[0];
    assert.match(`${v.stdout}${v.stderr}`, new RegExp(`\\bseq ${firstMarked}\\b`), `names seq ${firstMarked}:\n${v.text}`);
    // The other org's chain is untouched.
    const g = await auditVerify(file, 'globex');
    assert.equal(g.code, 0, g.text);
});
