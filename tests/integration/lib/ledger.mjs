// Helpers for the ledger's integration tests: the rail-side key payguard
// derives from an agent's Idempotency-Key, money requests, the ledger CLIs
// (approvals, audit, ledger show) run against a live data_dir, an audit
// chain checker that needs nothing but node:crypto, and a seeded PRNG so a
// randomized test can be replayed.
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';

import { PAYGUARD_BIN, WAIT_MS, settledAll } from './harness.mjs';
import { request } from './http.mjs';

export const FORM = 'application/x-www-form-urlencoded';

/* The key the rail must see for `agent`'s own `key` (README, Idempotency):
 * "pg_" + base64url(SHA-256(agent "\0" key)), no padding. */
export function derivedKey(agent, key) {
    return `pg_${createHash('sha256').update(`${agent}\0${key}`).digest('base64url')}`;
}

/* One money request through payguard. `key` null sends no Idempotency-Key. */
export function pay(port, token, body, key, { path = '/v1/payment_intents', method = 'POST', headers = {}, timeoutMs, agent } = {}) {
    const h = { Authorization: `Bearer ${token}`, 'Content-Type': FORM, ...headers };
    if (key !== null && key !== undefined) h['Idempotency-Key'] = key;
    return request(port, { method, path, body, headers: h, timeoutMs, agent });
}

/* The rail's recorded money requests (payment intents and friends) since
 * index `from` of its log. */
export async function railPosts(mock, from = 0) {
    return (await mock.requests()).slice(from).filter((r) => r.method === 'POST');
}

/* Runs `payguard ARGS...` once every running payguard's answers are durable
 * (they settle right after answering); resolves {code, stdout, stderr}. */
export async function cli(args, { env = {}, timeoutMs = WAIT_MS * 3 } = {}) {
    await settledAll();
    return new Promise((resolve) => {
        execFile(PAYGUARD_BIN, args, {
            env: {
                ...process.env,
                ASAN_OPTIONS: process.env.ASAN_OPTIONS ?? 'detect_leaks=1:abort_on_error=0:exitcode=86',
                UBSAN_OPTIONS: process.env.UBSAN_OPTIONS ?? 'halt_on_error=1:print_stacktrace=1',
                ...env,
            },
            timeout: timeoutMs,
            maxBuffer: 64 * 1024 * 1024,
        }, (err, stdout, stderr) => {
            resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0,
                      signal: err?.signal ?? null, stdout, stderr,
                      text: `$ payguard ${args.join(' ')}\n[exit ${err ? err.code ?? err.signal : 0}]\n${stdout}${stderr}` });
        });
    });
}

/* `payguard audit verify -c FILE [--org ORG]` → {code, orgs: {org: {entries, headSeq, headHash}}, ...}. */
export async function auditVerify(file, org) {
    const r = await cli(['audit', 'verify', '-c', file, ...(org ? ['--org', org] : [])]);
    const orgs = {};
    for (const m of r.stdout.matchAll(/^org (\S+): ok, (\d+) entries, head seq (\d+), head hash ([0-9a-f]{64})$/gm)) {
        orgs[m[1]] = { entries: Number(m[2]), headSeq: Number(m[3]), headHash: m[4] };
    }
    return { ...r, orgs };
}

/* `payguard audit export` → {code, lines (raw strings), entries (parsed)}. */
export async function auditExport(file, { org, since } = {}) {
    const args = ['audit', 'export', '-c', file];
    if (org) args.push('--org', org);
    if (since !== undefined) args.push('--since', String(since));
    const r = await cli(args);
    const lines = r.stdout.split('\n').filter((l) => l.length > 0);
    const entries = [];
    for (const l of lines) {
        try { entries.push(JSON.parse(l)); } catch { entries.push(null); }
    }
    return { ...r, lines, entries };
}

const HASH_TAIL = /,"hash":"([0-9a-f]{64})"\}$/;
const ZERO = '0'.repeat(64);

/* Re-verifies exported lines with node:crypto alone: for each org, entries in
 * seq order, seq consecutive, hash = SHA-256(bytes(prev_hash) ‖ canonical)
 * where canonical is the line without its `,"hash":"..."`, the first prev
 * being 64 zeros; the canonical bytes are ASCII with sorted keys and no
 * spaces. Returns {ok, problems[], orgs: {org: {count, headSeq, headHash}}}.
 * `startPrev` (org → hash) lets a partial export (--since) be checked. */
export function verifyChain(lines, { startPrev = {} } = {}) {
    const problems = [];
    const orgs = {};
    for (const [i, line] of lines.entries()) {
        const where = `line ${i + 1}`;
        const m = HASH_TAIL.exec(line);
        if (!m) { problems.push(`${where}: no trailing "hash": ${line.slice(0, 200)}`); continue; }
        const canonical = `${line.slice(0, m.index)}}`;
        let e;
        try { e = JSON.parse(canonical); } catch (err) { problems.push(`${where}: canonical part is not JSON: ${err.message}`); continue; }
        if (!/^[\x20-\x7e]*$/.test(line)) problems.push(`${where}: not printable ASCII`);
        const keys = Object.keys(e);
        const sorted = [...keys].sort();
        if (keys.join() !== sorted.join()) problems.push(`${where}: keys not sorted: ${keys.join(',')}`);
        if (JSON.stringify(e).length !== canonical.length && !/\\u/.test(canonical)) {
            problems.push(`${where}: not compact JSON`);
        }
        const org = e.org ?? '';
        const st = (orgs[org] ??= { count: 0, headSeq: null, headHash: startPrev[org] ?? ZERO });
        if (st.headSeq !== null && e.seq !== st.headSeq + 1) {
            problems.push(`${where}: org ${org} seq ${e.seq} after ${st.headSeq}`);
        }
        if ('prev_hash' in e && e.prev_hash !== st.headHash) {
            problems.push(`${where}: org ${org} seq ${e.seq} prev_hash ${e.prev_hash} != previous hash ${st.headHash}`);
        }
        const h = createHash('sha256').update(Buffer.from(st.headHash, 'hex')).update(Buffer.from(canonical, 'latin1')).digest('hex');
        if (h !== m[1]) problems.push(`${where}: org ${org} seq ${e.seq} hash ${m[1]} but SHA-256(prev ‖ canonical) is ${h}`);
        st.count++;
        st.headSeq = e.seq;
        st.headHash = m[1];
    }
    return { ok: problems.length === 0, problems, orgs };
}

/* `payguard ledger show -c FILE [--agent ID]` → {code, stdout, ...}. */
export function ledgerShow(file, agent) {
    return cli(['ledger', 'show', '-c', file, ...(agent ? ['--agent', agent] : [])]);
}

/* Reads one window's row out of `ledger show` text, whose table is
 *     window   posted   pending   limit   headroom
 *     daily    0.00     6000.00   6000.00 0.00
 * (the first agent's table when several are shown). Amounts as minor-unit
 * integers (two decimals); "-" (no limit) as null. */
export function parseWindow(text, window) {
    const lines = text.split('\n');
    const h = lines.findIndex((l) => /^\s*window\s+posted\s+pending\s+limit\s+headroom\s*$/.test(l));
    if (h < 0) return null;
    const cols = lines[h].trim().split(/\s+/);
    const names = { daily: ['daily', 'day'], weekly: ['weekly', 'week'], monthly: ['monthly', 'month'] }[window] ?? [window];
    const line = lines.slice(h + 1).find((l) => names.includes(l.trim().split(/\s+/)[0]));
    if (!line) return null;
    const cells = line.trim().split(/\s+/);
    const amount = (s) => {
        if (s === undefined) return undefined;
        if (s === '-') return null;
        const m = /^(-?)(\d+)\.(\d\d)$/.exec(s);
        if (!m) return undefined;
        return (m[1] ? -1 : 1) * (Number(m[2]) * 100 + Number(m[3]));
    };
    const out = { line };
    for (const c of ['posted', 'pending', 'limit', 'headroom']) out[c] = amount(cells[cols.indexOf(c)]);
    return out;
}

/* `payguard approvals list -c FILE [extra...]`. */
export function approvalsList(file, extra = []) {
    return cli(['approvals', 'list', '-c', file, ...extra]);
}

/* `payguard approvals approve|deny ID -c FILE [extra...]`. */
export function approvalsDecide(file, verb, id, extra = []) {
    return cli(['approvals', verb, id, '-c', file, ...extra]);
}

/* mulberry32: a tiny seeded PRNG, so a random schedule can be replayed. */
export function prng(seed) {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6D2B79F5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}
