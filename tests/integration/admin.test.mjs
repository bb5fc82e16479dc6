// The admin API end to end, against the real payguard and the mock rail:
// sign-in with password + TOTP (codes made here by an independent RFC 6238
// implementation over node:crypto), TOTP replay and single-use recovery
// codes, access-token negatives (tokens forged here with the key read from
// the ledger by mdb_dump, so the positive control proves the forgeries are
// right), refresh rotation and reuse, the RBAC matrix and org isolation, a
// held payment approved through the API and retried once, /metrics.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, randomUUID } from 'node:crypto';
import { execFile } from 'node:child_process';
import path from 'node:path';

import {
    makeTmp, newToken, startMockrail, startPayguard, configObject, writeConfig, httpRail,
    testWithLogs, stripeShapedError, headerValues, sleep,
} from './lib/harness.mjs';
import { request } from './lib/http.mjs';
import { derivedKey, pay, railPosts } from './lib/ledger.mjs';

let pg;
let mock;
let dir;
const tok = {};
const test = testWithLogs(() => pg);

// --- TOTP, independently (RFC 4226/6238, HMAC-SHA-1, 6 digits, 30 s) -------

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
function base32(buf) {
    let bits = 0, value = 0, out = '';
    for (const b of buf) {
        value = (value << 8) | b;
        bits += 8;
        while (bits >= 5) { out += B32[(value >>> (bits - 5)) & 31]; bits -= 5; }
    }
    if (bits > 0) out += B32[(value << (5 - bits)) & 31];
    return out;
}
function hotp(secret, counter) {
    const c = Buffer.alloc(8);
    c.writeBigUInt64BE(BigInt(counter));
    const h = createHmac('sha1', secret).update(c).digest();
    const o = h[h.length - 1] & 15;
    const n = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
    return String(n % 1e6).padStart(6, '0');
}

// Users: one per role in acme, an approver in globex, and spares for the
// tests that sign in themselves. Every user's password is a fresh pgt_
// token and its bcrypt line comes from `payguard token new`.
const USERS = {
    owner: { email: 'olga@acme.test', org: 'acme', role: 'owner' },
    admin: { email: 'adam@acme.test', org: 'acme', role: 'admin' },
    approver: { email: 'ana@acme.test', org: 'acme', role: 'approver' },
    viewer: { email: 'vic@acme.test', org: 'acme', role: 'viewer' },
    outsider: { email: 'gus@globex.test', org: 'globex', role: 'approver' },
    e2e: { email: 'erin@acme.test', org: 'acme', role: 'approver' },
    replay: { email: 'rita@acme.test', org: 'acme', role: 'viewer' },
    rotation: { email: 'rob@acme.test', org: 'acme', role: 'viewer' },
    recovery: { email: 'rick@acme.test', org: 'acme', role: 'viewer' },
    locked: { email: 'lola@acme.test', org: 'acme', role: 'viewer' },
    nototp: { email: 'nat@acme.test', org: 'acme', role: 'viewer' },
};
const RECOVERY = ['abcde-fghij-klmno-pqrst', 'zzzzz-yyyyy-xxxxx-22222'];
const recoveryHash = (code) => createHash('sha256').update(code.replace(/[-\s]/g, '').toLowerCase()).digest('hex');

const sessions = {};        // role → login answer
const lastStep = {};        // email → the last TOTP step this test spent

/* A TOTP code for `u` that payguard has not seen: the current step, or the
 * next one when the current was spent (waits for the step to start when it
 * is more than one ahead: never needed with one login per step). */
async function freshCode(u) {
    for (;;) {
        const now = Date.now() / 1000;
        let step = Math.floor(now / 30);
        // Close to a step's end the server may already be in the next one.
        if (now - step * 30 > 28) { await sleep(2100); continue; }
        if ((lastStep[u.email] ?? 0) >= step) step = lastStep[u.email] + 1;
        if (step > Math.floor(now / 30) + 1) { await sleep(1000); continue; }
        lastStep[u.email] = step;
        return hotp(u.secret, step);
    }
}

const admin = (p, opts = {}) => request(pg.adminPort, { path: p, ...opts });
function post(p, body, token, extra = {}) {
    const headers = { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) };
    return admin(p, { method: 'POST', headers, body: body === undefined ? undefined : JSON.stringify(body), ...extra });
}
const get = (p, token) => admin(p, { headers: token ? { Authorization: `Bearer ${token}` } : {} });

async function login(u, extra = {}, opts = {}) {
    const body = { email: u.email, password: u.password, ...(extra.recovery_code ? {} : { totp: await freshCode(u) }), ...extra };
    return post('/v1/auth/login', body, null, opts);
}

function errorShaped(res, status, code) {
    assert.equal(res.status, status, `status (body: ${res.body})`);
    assert.equal(res.json?.error?.code, code, res.body);
    assert.equal(typeof res.json.error.message, 'string');
    assert.match(String(res.headers['content-type']), /^application\/json/);
    assert.equal(res.headers['cache-control'], 'no-store');
}

/* The access-token key, read from the ledger's "humans" database. mdb_dump's
 * hex form: its printable form writes a backslash bare, which reads
 * ambiguously when the random key holds one. */
function jwtKey() {
    return new Promise((resolve, reject) => {
        execFile('mdb_dump', ['-s', 'humans', path.join(dir, 'data')], (err, out) => {
            if (err) return reject(err);
            const lines = out.split('\n');
            const i = lines.findIndex((l) => l === ` ${Buffer.from('jwt_key').toString('hex')}`);
            if (i < 0) return reject(new Error(`no jwt_key in\n${out}`));
            const buf = Buffer.from(lines[i + 1].trim(), 'hex');
            if (buf.length !== 33 || buf[0] !== 1) return reject(new Error(`unexpected jwt_key record ${buf.toString('hex')}`));
            resolve(buf.subarray(1));
        });
    });
}
const b64u = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');
function sign(key, header, claims, alg = 'sha256') {
    const h = b64u(header), p = b64u(claims);
    return `${h}.${p}.${createHmac(alg, key).update(`${h}.${p}`).digest('base64url')}`;
}

before(async () => {
    dir = await makeTmp('admin');
    for (const a of ['buyer', 'other']) tok[a] = await newToken(a);
    const env = {};
    const users = [];
    let i = 0;
    for (const [name, u] of Object.entries(USERS)) {
        const pw = await newToken(`user-${name}`);
        u.password = pw.token;
        u.secret = createHash('sha256').update(`totp-${name}-${randomUUID()}`).digest().subarray(0, 20);
        const entry = { email: u.email, org: u.org, role: u.role, password: pw.hash };
        if (name !== 'nototp') {
            env[`TOTP_${i}`] = base32(u.secret);
            entry.totp = `env:TOTP_${i}`;
        }
        if (name === 'recovery') entry.recovery_codes = RECOVERY.map(recoveryHash);
        users.push(entry);
        i++;
    }
    mock = await startMockrail();
    const cfg = configObject(dir, {
        limits: { auth_failures: 12 },
        rails: { stripe: httpRail(mock.url) },
        orgs: { acme: { timezone: 'UTC' }, globex: { timezone: 'UTC' } },
        policies: { approving: { currency: 'usd', approval_above: '20.00', daily: '1000.00' } },
        agents: [
            { id: 'buyer', org: 'acme', token: tok.buyer.hash, rails: ['stripe'], policy: 'approving' },
            { id: 'other', org: 'globex', token: tok.other.hash, rails: ['stripe'], policy: 'approving' },
        ],
    });
    cfg.users = users;
    const file = await writeConfig(dir, cfg);
    pg = await startPayguard(file, { env: { MOCK_STRIPE_SECRET: mock.secret, ...env } });
    for (const role of ['owner', 'admin', 'approver', 'viewer', 'outsider']) {
        const res = await login(USERS[role]);
        assert.equal(res.status, 200, `${role} signs in: ${res.body}`);
        sessions[role] = res.json;
    }
});
after(async () => {
    pg?.kill();
    await mock?.stop();
});


const key = () => `it-${randomUUID()}`;

/* A held payment of `agent`: 402 with an approval id, nothing reached the rail. */
async function hold(agent, amount, k) {
    const before = await mock.count();
    const res = await pay(pg.port, tok[agent].token, `amount=${amount}&currency=usd`, k);
    assert.equal(res.status, 402, res.body);
    const id = res.headers['payguard-approval-id'];
    assert.match(id ?? '', /^apr_/);
    assert.equal(await mock.count(), before, 'a hold reaches nothing');
    return id;
}

// --- sign-in -----------------------------------------------------------------------

test('login answers an HS256 access token (iss, aud, sub, org, role, jti, 15 min) and an opaque refresh token', () => {
    const s = sessions.approver;
    assert.equal(s.token_type, 'Bearer');
    assert.equal(s.expires_in, 900);
    assert.match(s.refresh_token, /^pgr_[A-Za-z0-9_-]{43}$/);
    const [h, p] = s.access_token.split('.').slice(0, 2).map((x) => JSON.parse(Buffer.from(x, 'base64url')));
    assert.equal(h.alg, 'HS256');
    assert.equal(p.iss, 'payguard');
    assert.equal(p.aud, 'payguard-admin');
    assert.equal(p.sub, USERS.approver.email);
    assert.equal(p.org, 'acme');
    assert.equal(p.role, 'approver');
    assert.ok(p.jti && p.jti.length >= 16);
    assert.equal(p.exp - p.iat, 900);
    assert.deepEqual(s.user, { email: USERS.approver.email, org: 'acme', role: 'approver' });
});

test('unknown user, wrong password and wrong TOTP get the same 401 invalid_credentials', async () => {
    const u = USERS.viewer;
    const unknown = await post('/v1/auth/login', { email: 'nobody@acme.test', password: u.password, totp: '123456' });
    const wrongPw = await post('/v1/auth/login', { email: u.email, password: `${u.password}x`, totp: hotp(u.secret, Math.floor(Date.now() / 30000)) });
    const wrongCode = await post('/v1/auth/login', { email: u.email, password: u.password, totp: '000000' === hotp(u.secret, Math.floor(Date.now() / 30000)) ? '111111' : '000000' });
    for (const r of [unknown, wrongPw, wrongCode]) errorShaped(r, 401, 'invalid_credentials');
    assert.equal(unknown.body, wrongPw.body);
    assert.equal(wrongPw.body, wrongCode.body);
    assert.ok(!('access_token' in (unknown.json ?? {})));
});

test('a TOTP code is accepted once: the same code again is refused', async () => {
    const u = USERS.replay;
    const code = await freshCode(u);
    const first = await post('/v1/auth/login', { email: u.email, password: u.password, totp: code });
    assert.equal(first.status, 200, first.body);
    const again = await post('/v1/auth/login', { email: u.email, password: u.password, totp: code });
    errorShaped(again, 401, 'invalid_credentials');
});

test('a recovery code signs in once; the second use is refused; codes are case and dash blind', async () => {
    const u = USERS.recovery;
    const ok = await login(u, { recovery_code: RECOVERY[0] });
    assert.equal(ok.status, 200, ok.body);
    const again = await login(u, { recovery_code: RECOVERY[0].toUpperCase().replace(/-/g, '') });
    errorShaped(again, 401, 'invalid_credentials');
    const unknown = await login(u, { recovery_code: 'aaaaa-aaaaa-aaaaa-aaaaa' });
    errorShaped(unknown, 401, 'invalid_credentials');
    const other = await login(u, { recovery_code: RECOVERY[1].toUpperCase() });
    assert.equal(other.status, 200, other.body);
    // Audited: the chain says how each sign-in happened.
    const audit = await get('/v1/audit?limit=1000', sessions.viewer.access_token);
    const logins = audit.json.entries.filter((e) => e.action === 'login' && e.actor === `user:${u.email}`);
    assert.deepEqual(logins.map((e) => e.note), ['recovery_code', 'recovery_code']);
});

test('bad login bodies are 400: missing factor, both factors, unknown field, not JSON', async () => {
    const u = USERS.viewer;
    for (const body of [
        JSON.stringify({ email: u.email, password: u.password }),
        JSON.stringify({ email: u.email, password: u.password, totp: '123456', recovery_code: RECOVERY[0] }),
        JSON.stringify({ email: u.email, password: u.password, totp: '123456', admin: true }),
        '{"email":',
        '[]',
        JSON.stringify({ email: u.email, email2: 1 }),
    ]) {
        const r = await admin('/v1/auth/login', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
        errorShaped(r, 400, 'bad_request');
    }
});

test('a user without a second factor cannot sign in (403 totp_required after the right password)', async () => {
    const u = USERS.nototp;
    const r = await post('/v1/auth/login', { email: u.email, password: u.password, totp: '123456' });
    errorShaped(r, 403, 'totp_required');
});

test('sign-in failures are limited per account: after 5, even the right credentials get 429', async () => {
    const u = USERS.locked;
    const from = { localAddress: '127.0.0.2' };
    for (let i = 0; i < 5; i++) {
        const r = await post('/v1/auth/login', { email: u.email, password: 'wrong-password-1', totp: '123456' }, null, from);
        errorShaped(r, 401, 'invalid_credentials');
    }
    const r = await post('/v1/auth/login', { email: u.email, password: u.password, totp: await freshCode(u) }, null, from);
    errorShaped(r, 429, 'rate_limited');
    assert.ok(Number(r.headers['retry-after']) >= 1);
});

test('sign-in failures are limited per address', async () => {
    const from = { localAddress: '127.0.0.3' };
    let limited = null;
    for (let i = 0; i < 14 && !limited; i++) {
        const r = await post('/v1/auth/login', { email: `ghost${i}@acme.test`, password: 'wrong-password-1', totp: '123456' }, null, from);
        if (r.status === 429) limited = { i, r };
        else errorShaped(r, 401, 'invalid_credentials');
    }
    assert.ok(limited, 'refused after the address limit');
    assert.equal(limited.i, 12, 'after exactly limits.auth_failures failures');
    errorShaped(limited.r, 429, 'rate_limited');
});

// --- access tokens -------------------------------------------------------------

test('access tokens: a token forged with the ledger key is accepted; alg none, other algs, tampering, expiry, wrong aud/iss, too long a lifetime, bad base64url and agent tokens are 401', async () => {
    const k = await jwtKey();
    const now = Math.floor(Date.now() / 1000);
    // The jti names a live sign-in (family "." random): the viewer's.
    const liveJti = JSON.parse(Buffer.from(sessions.viewer.access_token.split('.')[1], 'base64url')).jti;
    const family = liveJti.split('.')[0];
    assert.match(family, /^[0-9a-f]{32}$/, liveJti);
    const claims = { iss: 'payguard', aud: 'payguard-admin', sub: USERS.viewer.email, org: 'acme', role: 'viewer', jti: `${family}.0123456789abcdef`, iat: now, exp: now + 900 };
    const hdr = { alg: 'HS256', typ: 'JWT' };
    const good = sign(k, hdr, claims);
    const ok = await get('/v1/agents', good);
    assert.equal(ok.status, 200, `positive control: ${ok.body}`);
    // Signed right, but for no sign-in payguard knows, or none at all.
    for (const jti of ['0'.repeat(32) + '.0123456789abcdef', 'abcdef0123456789']) {
        errorShaped(await get('/v1/agents', sign(k, hdr, { ...claims, jti })), 401, 'invalid_token');
    }

    const real = sessions.viewer.access_token;
    const [h, p, s] = real.split('.');
    const payload = JSON.parse(Buffer.from(p, 'base64url'));
    const cases = {
        'alg none': `${b64u({ alg: 'none', typ: 'JWT' })}.${p}.`,
        'alg none, signature kept': `${b64u({ alg: 'none', typ: 'JWT' })}.${p}.${s}`,
        'alg HS512': sign(k, { alg: 'HS512', typ: 'JWT' }, claims, 'sha512'),
        'payload tampered (role owner)': `${h}.${b64u({ ...payload, role: 'owner' })}.${s}`,
        'payload tampered (other org)': `${h}.${b64u({ ...payload, org: 'globex' })}.${s}`,
        'signature tampered': `${h}.${p}.${s.slice(0, -2)}${s.endsWith('AA') ? 'BA' : 'AA'}`,
        'signed with another key': sign(Buffer.alloc(32, 7), hdr, claims),
        expired: sign(k, hdr, { ...claims, iat: now - 2000, exp: now - 1000 }),
        'not yet valid': sign(k, hdr, { ...claims, iat: now + 600, exp: now + 1400 }),
        'wrong audience': sign(k, hdr, { ...claims, aud: 'someone-else' }),
        'wrong issuer': sign(k, hdr, { ...claims, iss: 'evil' }),
        'lifetime over 15 min': sign(k, hdr, { ...claims, exp: now + 3600 }),
        'bad base64url': `${h}.${p}=.${s}`,
        'two parts': `${h}.${p}`,
        'unknown user': sign(k, hdr, { ...claims, sub: 'mallory@acme.test' }),
        'agent token': tok.buyer.token,
        'refresh token': sessions.viewer.refresh_token,
    };
    for (const [name, t] of Object.entries(cases)) {
        const r = await get('/v1/agents', t);
        assert.equal(r.status, 401, `${name}: ${r.body}`);
        assert.equal(r.json?.error?.code, 'invalid_token', `${name}: ${r.body}`);
    }
    errorShaped(await get('/v1/agents'), 401, 'unauthenticated');
    const basic = await admin('/v1/agents', { headers: { Authorization: `Basic ${Buffer.from(`${tok.buyer.token}:`).toString('base64')}` } });
    errorShaped(basic, 401, 'invalid_token');
});

// --- refresh ------------------------------------------------------------------------

test('refresh rotates: each refresh token works once; a reused one signs the whole family out (audited)', async () => {
    const u = USERS.rotation;
    const first = await login(u);
    assert.equal(first.status, 200, first.body);
    const r1 = await post('/v1/auth/refresh', { refresh_token: first.json.refresh_token });
    assert.equal(r1.status, 200, r1.body);
    assert.notEqual(r1.json.refresh_token, first.json.refresh_token);
    assert.equal((await get('/v1/agents', r1.json.access_token)).status, 200, 'the new access token works');
    const r2 = await post('/v1/auth/refresh', { refresh_token: r1.json.refresh_token });
    assert.equal(r2.status, 200, r2.body);

    // The first token again: reuse.
    const reuse = await post('/v1/auth/refresh', { refresh_token: first.json.refresh_token });
    errorShaped(reuse, 401, 'refresh_token_reused');
    // The live one of the family is dead too, and so are its access tokens.
    const dead = await post('/v1/auth/refresh', { refresh_token: r2.json.refresh_token });
    errorShaped(dead, 401, 'invalid_token');
    errorShaped(await get('/v1/agents', r2.json.access_token), 401, 'invalid_token');

    const audit = await get('/v1/audit?limit=1000', sessions.viewer.access_token);
    const reused = audit.json.entries.filter((e) => e.action === 'session_reuse');
    assert.equal(reused.length, 1, JSON.stringify(reused));
    assert.equal(reused[0].reason, 'refresh_token_reused');
    assert.match(reused[0].note, /rob@acme\.test/);

    // Another session of the same user is untouched; logout ends it.
    const second = await login(u);
    assert.equal(second.status, 200, second.body);
    const third = await login(u);
    assert.equal(third.status, 200, third.body);
    assert.equal((await get('/v1/agents', second.json.access_token)).status, 200);
    const out = await post('/v1/auth/logout', { refresh_token: second.json.refresh_token });
    assert.equal(out.status, 200, out.body);
    // The access token of that sign-in ends with it; another sign-in goes on.
    const ended = await get('/v1/agents', second.json.access_token);
    errorShaped(ended, 401, 'invalid_token');
    assert.match(ended.json.error.message, /signed out/);
    assert.equal((await get('/v1/agents', third.json.access_token)).status, 200);
    errorShaped(await post('/v1/auth/refresh', { refresh_token: second.json.refresh_token }), 401, 'invalid_token');
    errorShaped(await post('/v1/auth/refresh', { refresh_token: 'pgr_notatokenatallnotatokenatallnotatokenat' }), 401, 'invalid_token');
});

test('two concurrent refreshes of one token: exactly one gets a new pair', async () => {
    const u = USERS.rotation;
    const s = await login(u);
    assert.equal(s.status, 200, s.body);
    const [a, b] = await Promise.all([
        post('/v1/auth/refresh', { refresh_token: s.json.refresh_token }),
        post('/v1/auth/refresh', { refresh_token: s.json.refresh_token }),
    ]);
    const wins = [a, b].filter((r) => r.status === 200);
    assert.equal(wins.length, 1, `${a.status} ${a.body} / ${b.status} ${b.body}`);
    const loser = a.status === 200 ? b : a;
    errorShaped(loser, 401, 'refresh_token_reused');
});

// --- RBAC ------------------------------------------------------------------------------

const ROLES = ['viewer', 'approver', 'admin', 'owner'];
const RANK = { viewer: 0, approver: 1, admin: 2, owner: 3 };

test('RBAC matrix: every role × every route, allowed and refused', async () => {
    const id = await hold('buyer', 2100, key());
    const routes = [
        { m: 'GET', p: '/v1/approvals', need: 'viewer' },
        { m: 'GET', p: '/v1/approvals?status=all', need: 'viewer' },
        { m: 'GET', p: `/v1/approvals/${id}`, need: 'viewer' },
        // Allowed callers reach the lookup: an id that does not exist is 404.
        { m: 'POST', p: '/v1/approvals/apr_doesnotexist0000/approve', need: 'approver', allowed: 404 },
        { m: 'POST', p: '/v1/approvals/apr_doesnotexist0000/deny', need: 'approver', allowed: 404 },
        { m: 'GET', p: '/v1/agents', need: 'viewer' },
        { m: 'GET', p: '/v1/agents/buyer', need: 'viewer' },
        { m: 'POST', p: '/v1/agents/nosuchagent/revoke', need: 'admin', allowed: 404 },
        { m: 'POST', p: '/v1/agents/nosuchagent/restore', need: 'admin', allowed: 404 },
        { m: 'GET', p: '/v1/audit', need: 'viewer' },
        { m: 'GET', p: '/v1/audit/verify', need: 'viewer' },
        { m: 'POST', p: '/v1/policy/test', need: 'viewer', body: { agent: 'buyer', method: 'POST', path: '/v1/payment_intents', body: 'amount=100&currency=usd' } },
    ];
    const before = await mock.count();
    for (const role of ROLES) {
        const t = sessions[role].access_token;
        for (const r of routes) {
            const res = r.m === 'GET' ? await get(r.p, t) : await post(r.p, r.body ?? {}, t);
            const ok = RANK[role] >= RANK[r.need];
            if (ok) assert.equal(res.status, r.allowed ?? 200, `${role} ${r.m} ${r.p}: ${res.body}`);
            else errorShaped(res, 403, 'forbidden');
        }
    }
    assert.equal(await mock.count(), before, 'the rail saw nothing');
    // The approval is still pending: nobody decided it above.
    const still = await get(`/v1/approvals/${id}`, sessions.viewer.access_token);
    assert.equal(still.json.status, 'pending');
});

test('admins revoke and restore an agent through the API (audited with the user); a revoked agent is refused', async () => {
    const t = sessions.admin.access_token;
    const rv = await post('/v1/agents/buyer/revoke', { reason: 'rotating its token' }, t);
    assert.equal(rv.status, 200, rv.body);
    assert.equal(rv.json.revoked, true);
    assert.equal(rv.json.revocation.by, `user:${USERS.admin.email}`);
    const before = await mock.count();
    const res = await pay(pg.port, tok.buyer.token, 'amount=100&currency=usd', key());
    stripeShapedError(assert, res, 401, 'payguard_agent_revoked');
    assert.equal(await mock.count(), before, 'the rail saw nothing');
    const rs = await post('/v1/agents/buyer/restore', {}, t);
    assert.equal(rs.status, 200, rs.body);
    assert.equal(rs.json.revoked, false);
    errorShaped(await post('/v1/agents/buyer/restore', {}, t), 409, 'not_revoked');
    const ok = await pay(pg.port, tok.buyer.token, 'amount=100&currency=usd', key());
    assert.equal(ok.status, 200, ok.body);
    const audit = await get('/v1/audit?limit=1000', t);
    const mine = audit.json.entries.filter((e) => e.actor === `user:${USERS.admin.email}`).map((e) => e.action);
    assert.deepEqual(mine.filter((a) => a !== 'login'), ['revoke', 'reinstate']);
});

test('org isolation: another org\'s approval and agent are 404 exactly like missing ones; lists and audit show only the caller\'s org', async () => {
    const id = await hold('buyer', 2200, key());
    const g = sessions.outsider.access_token;
    const missing = await get('/v1/approvals/apr_doesnotexist0000', g);
    const foreign = await get(`/v1/approvals/${id}`, g);
    errorShaped(foreign, 404, 'not_found');
    assert.equal(foreign.body, missing.body);
    const decide = await post(`/v1/approvals/${id}/approve`, { note: 'mine now' }, g);
    errorShaped(decide, 404, 'not_found');
    assert.equal(decide.body, (await post('/v1/approvals/apr_doesnotexist0000/approve', {}, g)).body);
    const agent = await get('/v1/agents/buyer', g);
    errorShaped(agent, 404, 'not_found');
    assert.equal(agent.body, (await get('/v1/agents/nosuchagent', g)).body);
    errorShaped(await post('/v1/agents/buyer/revoke', {}, sessions.outsider.access_token), 403, 'forbidden');
    errorShaped(await post('/v1/policy/test', { agent: 'buyer', method: 'GET', path: '/v1/balance' }, g), 404, 'not_found');

    const list = await get('/v1/approvals?status=all', g);
    assert.equal(list.status, 200);
    assert.ok(list.json.approvals.every((a) => a.org === 'globex'));
    assert.ok(!list.json.approvals.some((a) => a.id === id));
    const agents = await get('/v1/agents', g);
    assert.deepEqual(agents.json.agents.map((a) => a.id), ['other']);
    const audit = await get('/v1/audit?limit=1000', g);
    assert.equal(audit.json.org, 'globex');
    assert.ok(audit.json.entries.length > 0 && audit.json.entries.every((e) => e.org === 'globex'));
    const still = await get(`/v1/approvals/${id}`, sessions.viewer.access_token);
    assert.equal(still.json.status, 'pending', 'still pending after the outsider tried');
});

// --- end to end --------------------------------------------------------------------------

test('held payment → approver signs in with password + TOTP → approves via the API → the retry reaches the rail exactly once', async () => {
    const n0 = (await mock.requests()).length;
    const k = key();
    const body = 'amount=2500&currency=usd';
    const id = await hold('buyer', 2500, k);

    const u = USERS.e2e;
    const s = await login(u);
    assert.equal(s.status, 200, s.body);
    const t = s.json.access_token;

    const pending = await get('/v1/approvals?status=pending', t);
    assert.equal(pending.status, 200, pending.body);
    const a = pending.json.approvals.find((x) => x.id === id);
    assert.ok(a, `listed: ${pending.body}`);
    assert.equal(a.agent, 'buyer');
    assert.equal(a.operation, 'payment');
    assert.equal(a.amount, 2500);
    assert.equal(a.amount_display, '25.00');
    assert.equal(a.currency, 'usd');
    assert.equal(a.reason, 'approval_required');
    assert.equal(a.status, 'pending');

    // A viewer cannot approve; an approver of another org gets 404.
    errorShaped(await post(`/v1/approvals/${id}/approve`, {}, sessions.viewer.access_token), 403, 'forbidden');
    errorShaped(await post(`/v1/approvals/${id}/approve`, {}, sessions.outsider.access_token), 404, 'not_found');
    assert.equal((await mock.requests()).length, n0, 'nothing reached the rail yet');

    const ok = await post(`/v1/approvals/${id}/approve`, { note: 'expected invoice' }, t);
    assert.equal(ok.status, 200, ok.body);
    assert.equal(ok.json.status, 'approved');
    assert.equal(ok.json.decided_by, `user:${u.email}`);
    assert.equal(ok.json.note, 'expected invoice');
    errorShaped(await post(`/v1/approvals/${id}/deny`, {}, t), 409, 'approval_not_pending');

    const res = await pay(pg.port, tok.buyer.token, body, k);
    assert.equal(res.status, 200, res.body);
    const replay = await pay(pg.port, tok.buyer.token, body, k);
    assert.equal(replay.status, 200);
    assert.equal(replay.headers['idempotent-replayed'], 'true');
    const posts = await railPosts(mock, n0);
    assert.equal(posts.length, 1, 'the rail saw exactly one request');
    assert.deepEqual(headerValues(posts[0], 'Idempotency-Key'), [derivedKey('buyer', k)]);

    const audit = await get('/v1/audit?limit=1000', t);
    const entry = audit.json.entries.find((e) => e.action === 'approve' && e.approval === id);
    assert.ok(entry, 'the decision is in the chain');
    assert.equal(entry.actor, `user:${u.email}`);
    const used = await get(`/v1/approvals/${id}`, t);
    assert.equal(used.json.status, 'used');
});

test('denied through the API: the retry gets 403 payguard_approval_denied and the rail saw nothing', async () => {
    const k = key();
    const id = await hold('buyer', 2600, k);
    const d = await post(`/v1/approvals/${id}/deny`, { note: 'not today' }, sessions.approver.access_token);
    assert.equal(d.status, 200, d.body);
    assert.equal(d.json.status, 'denied');
    const before = await mock.count();
    const res = await pay(pg.port, tok.buyer.token, 'amount=2600&currency=usd', k);
    stripeShapedError(assert, res, 403, 'payguard_approval_denied');
    assert.equal(await mock.count(), before, 'the rail saw nothing');
});

// --- views ---------------------------------------------------------------------------------

test('agent detail: policy, spend per window with limit and headroom, revoked flag', async () => {
    const paid = await pay(pg.port, tok.buyer.token, 'amount=500&currency=usd', key());
    assert.equal(paid.status, 200, paid.body);
    const r = await get('/v1/agents/buyer', sessions.viewer.access_token);
    assert.equal(r.status, 200, r.body);
    assert.equal(r.json.id, 'buyer');
    assert.equal(r.json.policy, 'approving');
    assert.equal(r.json.revoked, false);
    assert.equal(r.json.currency, 'usd');
    const daily = r.json.spend.find((w) => w.window === 'daily');
    assert.equal(daily.limit, 100000);
    assert.equal(daily.headroom, daily.limit - daily.posted - daily.pending);
    assert.ok(daily.posted + daily.pending >= 500, `the 5.00 just paid counts: ${r.body}`);
    assert.ok(r.json.pending_reservations.some((p) => p.amount === 500 && p.route === 'payment_intents.create'), r.body);
    assert.equal(r.json.spend.find((w) => w.window === 'weekly').limit, null);
    assert.equal(r.json.policy_rules.approval_above, '20.00');
    assert.ok(Array.isArray(r.json.pending_reservations));
});

test('audit verify answers what the CLI says; pages follow after/limit', async () => {
    const t = sessions.viewer.access_token;
    await pg.settled(); // the last payment's settlement is audited after its answer
    const v = await get('/v1/audit/verify', t);
    assert.equal(v.status, 200, v.body);
    assert.equal(v.json.ok, true);
    assert.equal(v.json.org, 'acme');
    assert.equal(v.json.entries, v.json.head_seq);
    const page = await get('/v1/audit?after=2&limit=3', t);
    assert.deepEqual(page.json.entries.map((e) => e.seq), [3, 4, 5]);
    assert.equal(page.json.next, 5);
    assert.equal(page.json.head_seq, v.json.head_seq);
    assert.ok(page.json.entries.every((e) => /^[0-9a-f]{64}$/.test(e.hash)));
    errorShaped(await get('/v1/audit?limit=0', t), 400, 'bad_request');
    errorShaped(await get('/v1/audit?after=-1', t), 400, 'bad_request');
    errorShaped(await get('/v1/audit?bogus=1', t), 400, 'bad_request');
});

test('policy dry run: hold above approval_above, allow below, nothing recorded or sent', async () => {
    const t = sessions.viewer.access_token;
    const before = await mock.count();
    await pg.settled();
    const seq0 = (await get('/v1/audit/verify', t)).json.head_seq;
    const hold = await post('/v1/policy/test', { agent: 'buyer', method: 'POST', path: '/v1/payment_intents', body: 'amount=5000&currency=usd' }, t);
    assert.equal(hold.status, 200, hold.body);
    assert.equal(hold.json.decision, 'hold');
    assert.equal(hold.json.operation, 'payment');
    assert.equal(hold.json.amount, 5000);
    assert.ok(hold.json.rules.length > 0);
    const allow = await post('/v1/policy/test', { agent: 'buyer', method: 'POST', path: '/v1/payment_intents', body: 'amount=500&currency=usd' }, t);
    assert.equal(allow.json.decision, 'allow', allow.body);
    const over = await post('/v1/policy/test', { agent: 'buyer', method: 'POST', path: '/v1/payment_intents', body: 'amount=500&currency=usd', spent: { daily: '999.00' } }, t);
    assert.equal(over.json.decision, 'deny', over.body);
    assert.equal(over.json.reason, 'daily_limit');
    errorShaped(await post('/v1/policy/test', { agent: 'buyer' }, t), 400, 'bad_request');
    assert.equal(await mock.count(), before, 'the rail saw nothing');
    assert.equal((await get('/v1/audit/verify', t)).json.head_seq, seq0, 'nothing audited');
});

test('routes: unknown → 404 JSON, wrong method → 405 with Allow, oversized body → 413, every answer no-store', async () => {
    errorShaped(await get('/v1/nope'), 404, 'not_found');
    errorShaped(await get('/nope'), 404, 'not_found');
    const m = await get('/v1/auth/login');
    errorShaped(m, 405, 'method_not_allowed');
    assert.equal(m.headers.allow, 'POST');
    errorShaped(await post('/v1/approvals', {}, sessions.viewer.access_token), 405, 'method_not_allowed');
    errorShaped(await admin('/metrics', { method: 'POST' }), 405, 'method_not_allowed');
    const big = await post('/v1/auth/login', { email: 'x'.repeat(20000) });
    errorShaped(big, 413, 'body_too_large');
    const h = await get('/healthz');
    assert.equal(h.status, 200);
    assert.equal(h.headers['cache-control'], 'no-store');
});

test('/metrics: Prometheus text with requests by rail/operation/decision/reason, rail codes, histograms, batches, pending, audit heads', async () => {
    const r = await get('/metrics');
    assert.equal(r.status, 200, r.body);
    assert.match(r.headers['content-type'], /^text\/plain; version=0\.0\.4/);
    const t = r.body;
    assert.match(t, /^payguard_requests_total\{rail="stripe",operation="payment",decision="hold",reason="approval_required"\} [1-9]\d*$/m);
    assert.match(t, /^payguard_requests_total\{rail="stripe",operation="payment",decision="allow",reason=""\} [1-9]\d*$/m);
    assert.match(t, /^payguard_requests_total\{rail="",operation="none",decision="none",reason="payguard_agent_revoked"\} 1$/m);
    assert.match(t, /^payguard_rail_responses_total\{code="200"\} [1-9]\d*$/m);
    for (const h of ['decision', 'commit', 'upstream']) {
        assert.match(t, new RegExp(`^payguard_${h}_seconds_bucket\\{le="\\+Inf"\\} [1-9]\\d*$`, 'm'));
        assert.match(t, new RegExp(`^payguard_${h}_seconds_count [1-9]\\d*$`, 'm'));
    }
    assert.match(t, /^payguard_ledger_batches_total [1-9]\d*$/m);
    assert.match(t, /^payguard_ledger_batch_items_total [1-9]\d*$/m);
    assert.match(t, /^payguard_pending_reservations \d+$/m);
    assert.match(t, /^payguard_open_connections \d+$/m);
    assert.match(t, /^payguard_ledger_up 1$/m);
    for (const w of ['attempts', 'deliveries', 'failures', 'given_up', 'endpoints_disabled'])
        assert.match(t, new RegExp(`^# TYPE payguard_webhook_${w}_total counter\npayguard_webhook_${w}_total \\d+$`, 'm'));
    const v = await get('/v1/audit/verify', sessions.viewer.access_token);
    const head = Number(/^payguard_audit_head_seq\{org="acme"\} (\d+)$/m.exec(t)?.[1]);
    assert.ok(head > 0 && head <= v.json.head_seq, `${head} vs ${v.json.head_seq}`);
    assert.match(t, /^payguard_audit_head_seq\{org="globex"\} \d+$/m);
});

test('payguard stops cleanly after all of it (exit 0: under ASan, no leak)', async () => {
    const { code } = await pg.stop();
    assert.equal(code, 0, pg.tail(40));
});
