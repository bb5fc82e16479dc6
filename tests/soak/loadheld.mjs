// The load-held case: payguard holding 10,000 answered keep-alive
// connections while a burst of 5,000 new ones arrives at 5,000 per second.
// payguard must keep serving (the held connections, a fresh one in the
// middle of the burst, fresh ones after), answer every connection past
// limits.max_connections with its 503 and close it (never a silent drop),
// stay within its open-file limit and not crash. tests/soak/connstorm (C,
// libuv) makes the connections; this script starts payguard and the mock
// rail, watches payguard's descriptors and memory, and prints the figures.
//
//   LOADHELD_MODE=release|asan LOADHELD_HOLD=10000 LOADHELD_BURST=5000
//   LOADHELD_RATE=5000 LOADHELD_MAX=11000 node tests/soak/loadheld.mjs
import path from 'node:path';
import fs from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MODE = process.env.LOADHELD_MODE ?? 'release';
process.env.PAYGUARD_MODE = MODE;
process.env.PAYGUARD_BIN ??= path.join(repo, 'build', MODE, 'payguard');
process.env.MOCKRAIL_BIN ??= path.join(repo, 'build', 'release', 'mockrail');
const CONNSTORM = process.env.CONNSTORM_BIN ?? path.join(repo, 'build', 'release', 'soak', 'connstorm');

const H = await import('../integration/lib/harness.mjs');
const P = await import('./lib/procfs.mjs');

const num = (v, d) => (v === undefined || v === '' ? d : Number(v));
let HOLD = num(process.env.LOADHELD_HOLD, 10000);
let BURST = num(process.env.LOADHELD_BURST, 5000);
const RATE = num(process.env.LOADHELD_RATE, 5000);
let MAX = num(process.env.LOADHELD_MAX, HOLD + 1000);
const FRESH = 20;
const log = (...a) => console.log(...a);

// Descriptors: payguard needs one per connection (two while a request is at
// the rail) plus its own; connstorm one per connection. Both run under our
// hard limit; when even that is too low, the case is scaled down.
const hardLimit = (await P.fdLimit(process.pid))?.hard ?? 1024;
const canHave = hardLimit;
if (HOLD + BURST + 200 > canHave || MAX + 1200 > canHave) {
    const scale = Math.min((canHave - 200) / (HOLD + BURST), (canHave - 1200) / MAX);
    log(`loadheld: the open-file hard limit is ${hardLimit}: scaling the case down by ${scale.toFixed(2)}`);
    HOLD = Math.floor(HOLD * scale);
    BURST = Math.floor(BURST * scale);
    MAX = Math.floor(MAX * scale);
}
const PG_NOFILE = Math.min(2 * MAX + 1024, hardLimit); // what payguard asks for, if allowed
const STORM_NOFILE = Math.min(HOLD + BURST + FRESH + 256, hardLimit);

const checks = {};
const failures = [];
function invariant(name, ok, detail) {
    const c = (checks[name] ??= { passed: 0, failed: 0 });
    if (ok) c.passed++;
    else {
        c.failed++;
        failures.push(`${name}: ${detail}`);
    }
}

const dir = await H.makeTmp('loadheld');
const mock = await H.startMockrail();
const tok = await H.newToken('holder');
const cfg = H.configObject(dir, {
    limits: { max_connections: MAX, idle_timeout_ms: 600000, header_timeout_ms: 20000 },
    rails: { stripe: H.httpRail(mock.url, { timeout_ms: 20000 }) },
    agents: [{ id: 'holder', org: 'acme', token: tok.hash, rails: ['stripe'] }],
});
const file = await H.writeConfig(dir, cfg);
const pg = await H.startPayguard(file, { env: { MOCK_STRIPE_SECRET: mock.secret }, ulimitN: PG_NOFILE });
const pid = pg.proc.pid;
const limit = await P.fdLimit(pid);
const ports = { agentPort: pg.port, adminPort: pg.adminPort, railPort: mock.port };
const base = { mem: await P.memory(pid), fds: await P.descriptors(pid, ports) };
log(`loadheld: mode ${MODE}; payguard pid ${pid}, limits.max_connections ${MAX}, open files ${limit?.soft}; `
    + `holding ${HOLD}, then a burst of ${BURST} at ${RATE}/s`);

// Samples descriptors and memory all along, for the peaks.
let peakFds = base.fds.total;
let peakRss = base.mem.rss;
let sampling = true;
const sampler = (async () => {
    while (sampling) {
        try {
            const n = (await fs.readdir(`/proc/${pid}/fd`)).length;
            peakFds = Math.max(peakFds, n);
            peakRss = Math.max(peakRss, (await P.memory(pid)).rss);
        } catch { /* exited: caught below */ }
        await H.sleep(100);
    }
})();

async function gauge() {
    try {
        const r = await fetch(`http://127.0.0.1:${pg.adminPort}/metrics`);
        const m = /^payguard_open_connections(?:\{[^}]*\})? (\d+)/m.exec(await r.text());
        return m ? Number(m[1]) : null;
    } catch {
        return null;
    }
}

const phases = {};
const snaps = {};
const args = ['--hold', HOLD, '--ramp', 500, '--burst', BURST, '--rate', RATE, '--fresh', FRESH,
              '--settle', 2, '--timeout', MODE === 'asan' ? 120 : 60,
              '-p', '/v1/balance', '-H', `Authorization: Bearer ${tok.token}`, `127.0.0.1:${pg.port}`].map(String);
const storm = spawn('bash', ['-c', `ulimit -n ${STORM_NOFILE} 2>/dev/null; exec "$0" "$@"`, CONNSTORM, ...args],
                    { stdio: ['ignore', 'pipe', 'pipe'] });
let stormErr = '';
storm.stderr.on('data', (d) => { stormErr += d; });
let partial = '';
const measuring = [];
storm.stdout.on('data', (d) => {
    partial += d;
    let i;
    while ((i = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, i);
        partial = partial.slice(i + 1);
        let ev;
        try { ev = JSON.parse(line); } catch { log(`connstorm: ${line}`); continue; }
        phases[ev.event] = ev;
        log(`loadheld: ${ev.event}: ${line}`);
        // connstorm pauses after "held" and "burst": measure payguard then.
        measuring.push((async () => {
            try {
                snaps[ev.event] = { mem: await P.memory(pid), fds: await P.descriptors(pid, ports), open: await gauge() };
            } catch (e) {
                snaps[ev.event] = { error: String(e) };
            }
        })());
    }
});
const stormExit = await new Promise((r) => storm.on('exit', (code, signal) => r({ code, signal })));
await Promise.all(measuring);
await H.sleep(1000);
const after = { mem: await P.memory(pid).catch(() => null), fds: await P.descriptors(pid, ports).catch(() => null) };
sampling = false;
await sampler;

// --- judging ------------------------------------------------------------------

invariant('connstorm ran every phase', stormExit.code === 0 && phases.fresh,
          `connstorm exited ${JSON.stringify(stormExit)}: ${stormErr.slice(-500)}`);
const held = phases.held ?? {};
const burst = phases.burst ?? {};
invariant('every held connection was served', held.served === HOLD, JSON.stringify(held));
invariant('every burst connection was served or cleanly refused',
          burst.served + burst.refused_503 === BURST
          && !burst.reset_before_answer && !burst.closed_before_answer && !burst.timed_out && !burst.connect_failed,
          JSON.stringify(burst));
invariant('never more connections than limits.max_connections', (held.served ?? 0) + (burst.served ?? 0) <= MAX,
          `${held.served} held + ${burst.served} served in the burst > ${MAX}`);
if (HOLD + BURST > MAX) invariant('refuses past the limit', burst.refused_503 > 0, JSON.stringify(burst));
invariant('a request on a fresh connection mid-burst got its answer',
          ['served', 'refused_503'].includes(burst.mid_burst_fresh), JSON.stringify(burst));
invariant('refused connections are closed by payguard', phases.probe_held?.refused_left_open === 0,
          `${phases.probe_held?.refused_left_open} of ${burst.refused_503} refused connections still open ${2} s later`);
invariant('held connections still served after the burst', phases.probe_held?.served === held.served,
          JSON.stringify(phases.probe_held));
invariant('fresh connections served after the burst', phases.fresh?.served === FRESH, JSON.stringify(phases.fresh));
invariant('payguard never ran out of descriptors', limit && peakFds < limit.soft,
          `peak ${peakFds} descriptors, limit ${limit?.soft}`);
invariant('no agent connection left when the clients are gone', after.fds && after.fds.agent === 0,
          JSON.stringify(after.fds));
pg.deliberate = true;
const stop = await pg.stop();
invariant('no crash', stop.code === 0 && stop.signal === null, `${JSON.stringify(stop)}\n${pg.tail(40)}`);
const stray = pg.lines.filter((l) => { try { return typeof JSON.parse(l) !== 'object'; } catch { return true; } });
invariant('no sanitizer report', !stray.some((l) => /Sanitizer|runtime error|==\d+==/.test(l)), stray.slice(0, 10).join('\n'));
invariant('nothing but JSON on payguard stderr', stray.length === 0, stray.slice(0, 10).join('\n'));
await mock.stop();

// --- figures ---------------------------------------------------------------------

const mib = (kb) => (kb / 1024).toFixed(1);
const lines = [];
const out = (s) => lines.push(s);
out(`== load-held figures: mode ${MODE}, limits.max_connections ${MAX}, payguard open-file limit ${limit?.soft}`);
out(`held: ${held.served ?? 0} of ${HOLD} connections answered and held (${held.seconds}s to set up)`);
out(`burst: ${BURST} new connections, ${burst.rate_achieved}/s achieved (${RATE}/s wanted): `
    + `${burst.served ?? 0} served, ${burst.refused_503 ?? 0} refused with 503 (${burst.refused_503 - (phases.probe_held?.refused_left_open ?? 0)} closed by payguard), `
    + `${(burst.reset_before_answer ?? 0) + (burst.closed_before_answer ?? 0)} dropped without an answer, ${burst.timed_out ?? 0} timed out, `
    + `${burst.connect_failed ?? 0} not connected ${JSON.stringify(burst.connect_errors ?? {})}; mid-burst fresh request: ${burst.mid_burst_fresh} ${burst.mid_burst_status}`);
out(`after the burst: ${phases.probe_held?.served ?? 0} of ${held.served ?? 0} held connections served again, `
    + `${phases.fresh?.served ?? 0} of ${FRESH} fresh connections served`);
const snapLine = (name, s) => (s && !s.error
    ? `${name}: RSS ${mib(s.mem.rss)} MiB (anonymous ${mib(s.mem.anon)}), ${s.fds.total} descriptors (${s.fds.agent} agent sockets, ${s.fds.rail} to the rail), open_connections gauge ${s.open ?? '-'}`
    : `${name}: ${s?.error ?? 'not measured'}`);
out(snapLine('payguard at start', base));
out(snapLine(`payguard holding ${held.served ?? 0}`, snaps.held));
out(snapLine('payguard after the burst', snaps.burst));
out(snapLine('payguard with the clients gone', after.fds ? after : null));
out(`payguard peaks: ${peakFds} descriptors (limit ${limit?.soft}), RSS ${mib(peakRss)} MiB; `
    + `${held.served ? ((((snaps.held?.mem.rss ?? 0) - base.mem.rss) / held.served) * 1024).toFixed(0) : '-'} bytes of RSS per held connection`);
let passed = 0;
let failed = 0;
for (const [name, c] of Object.entries(checks).sort()) {
    passed += c.passed;
    failed += c.failed;
    out(`  ${name.padEnd(60)} ${c.failed ? 'FAILED' : 'ok'}`);
}
out(`${passed} invariant checks passed, ${failed} failed`);
for (const f of failures) out(`  ${f.slice(0, 1200)}`);
out(failed ? 'load-held: FAIL' : 'load-held: PASS');
log(lines.join('\n'));
if (process.env.LOADHELD_REPORT) await fs.writeFile(process.env.LOADHELD_REPORT, `${lines.join('\n')}\n`);
await fs.rm(dir, { recursive: true, force: true }).catch(() => {});
process.exit(failed ? 1 : 0);
