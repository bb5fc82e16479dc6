// TLS on the agent listener (listen.tls) and mutual TLS (listen.tls.client_ca):
// agents reach payguard over verified TLS; with a client CA, only agents
// presenting a certificate signed by it get a connection at all.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import net from 'node:net';
import fs from 'node:fs/promises';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

import {
    makeTmp, makeTls, newToken, startMockrail, startPayguard, configObject, writeConfig,
    httpRail, testWithLogs,
} from './lib/harness.mjs';

const run = promisify(execFile);
let tls, dir, mock, tok, plain, mutual;
const test = testWithLogs(() => mutual ?? plain);

/* A client certificate for `cn` signed by the CA in ca.pem/ca.key (or another). */
async function clientCert(name, caBase) {
    const f = (n) => path.join(dir, n);
    await fs.writeFile(f(`${name}.ext`), 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
    await run('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
        '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${name}`]);
    await run('openssl', ['x509', '-req', '-in', f(`${name}.csr`), '-CA', f(`${caBase}.pem`), '-CAkey', f(`${caBase}.key`),
        '-CAcreateserial', '-out', f(`${name}.pem`), '-days', '3', '-extfile', f(`${name}.ext`)]);
    return { cert: await fs.readFile(f(`${name}.pem`)), key: await fs.readFile(f(`${name}.key`)) };
}

async function start(name, listenTls) {
    const d = path.join(dir, name);
    await fs.mkdir(d, { recursive: true });
    const cfg = configObject(d, {
        rails: { stripe: httpRail(mock.url) },
        agents: [{ id: 'shopper', org: 'acme', token: tok.hash, rails: ['stripe'] }],
    });
    cfg.listen.tls = listenTls;
    return startPayguard(await writeConfig(d, cfg), { env: { MOCK_STRIPE_SECRET: mock.secret } });
}

before(async () => {
    dir = await makeTmp('agent-tls');
    tls = await makeTls(dir);
    tok = await newToken('shopper');
    mock = await startMockrail();
    plain = await start('tls', { cert: tls.cert, key: tls.key });
    mutual = await start('mtls', { cert: tls.cert, key: tls.key, client_ca: tls.ca });
});
after(async () => {
    for (const p of [plain, mutual]) {
        const r = await p?.stop();
        assert.equal(r?.code, 0, `payguard exit ${r?.code}`);
    }
    await mock?.stop();
});

function get(port, opts = {}) {
    return new Promise((resolve, reject) => {
        const req = https.request({
            host: '127.0.0.1', port, path: '/v1/balance', servername: 'localhost',
            headers: { Authorization: `Bearer ${tok.token}` }, ca: opts.ca ?? [], agent: false,
            cert: opts.cert, key: opts.key, timeout: 5000,
        }, (res) => {
            let body = '';
            res.on('data', (d) => { body += d; });
            res.on('end', () => resolve({ status: res.statusCode, body }));
        });
        req.on('error', reject);
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.end();
    });
}

test('agents reach payguard over TLS with a certificate their CA verifies; the rail is reached', async () => {
    const ca = await fs.readFile(tls.ca);
    const before = await mock.count();
    const res = await get(plain.port, { ca });
    assert.equal(res.status, 200, res.body);
    assert.equal(await mock.count(), before + 1);
    const again = await get(plain.port, { ca });
    assert.equal(again.status, 200);
});

test('a client that does not trust payguard\'s certificate does not connect; plain HTTP on the TLS port gets no answer', async () => {
    const other = await fs.readFile(tls.otherCa);
    await assert.rejects(get(plain.port, { ca: other }), /certificate|self.signed|unable/i);
    const answer = await new Promise((resolve) => {
        const s = net.connect(plain.port, '127.0.0.1', () => s.write('GET /v1/balance HTTP/1.1\r\nHost: x\r\n\r\n'));
        let got = '';
        s.on('data', (d) => { got += d; });
        s.on('close', () => resolve(got));
        s.on('error', () => resolve(got));
        setTimeout(() => s.destroy(), 3000);
    });
    assert.ok(!answer.startsWith('HTTP/1.1 200'), 'no plaintext answer');
});

test('mutual TLS: a client certificate signed by client_ca is accepted; none, or one from another CA, is refused', async () => {
    const ca = await fs.readFile(tls.ca);
    const good = await clientCert('agent-good', 'ca');
    const bad = await clientCert('agent-other', 'other-ca');
    const ok = await get(mutual.port, { ca, ...good });
    assert.equal(ok.status, 200, ok.body);
    const before = await mock.count();
    await assert.rejects(get(mutual.port, { ca }), /./, 'no client certificate');
    await assert.rejects(get(mutual.port, { ca, ...bad }), /./, 'a certificate from another CA');
    assert.equal(await mock.count(), before, 'the rail saw nothing');
});

test('an agent bound to its client certificate: the certificate alone authenticates it; another agent\'s token with the wrong certificate is refused', async () => {
    const { X509Certificate, createHash } = await import('node:crypto');
    const ca = await fs.readFile(tls.ca);
    const certy = await clientCert('certy', 'ca');
    const pinnedCert = await clientCert('pinned', 'ca');
    const spki = createHash('sha256')
        .update(new X509Certificate(pinnedCert.cert).publicKey.export({ type: 'spki', format: 'der' }))
        .digest('hex');
    const pinnedTok = await newToken('pinned');
    const d = path.join(dir, 'bound');
    await fs.mkdir(d, { recursive: true });
    const cfg = configObject(d, {
        rails: { stripe: httpRail(mock.url) },
        agents: [
            { id: 'certy', org: 'acme', rails: ['stripe'], client_cert: { subject: 'CN=certy' } },
            { id: 'pinned', org: 'acme', token: pinnedTok.hash, rails: ['stripe'], client_cert: { spki_sha256: spki } },
        ],
    });
    cfg.listen.tls = { cert: tls.cert, key: tls.key, client_ca: tls.ca };
    const pg = await startPayguard(await writeConfig(d, cfg), { env: { MOCK_STRIPE_SECRET: mock.secret } });
    const call = (opts, token) => new Promise((resolve, reject) => {
        const req = https.request({
            host: '127.0.0.1', port: pg.port, path: '/v1/balance', servername: 'localhost', ca, agent: false,
            headers: token ? { Authorization: `Bearer ${token}` } : {}, timeout: 5000, ...opts,
        }, (res) => {
            let body = '';
            res.on('data', (x) => { body += x; });
            res.on('end', () => resolve({ status: res.statusCode, body }));
        });
        req.on('error', reject);
        req.end();
    });
    try {
        const alone = await call(certy);
        assert.equal(alone.status, 200, alone.body);
        const before = await mock.count();
        const wrong = await call(certy, pinnedTok.token);
        assert.equal(wrong.status, 401, wrong.body);
        assert.match(wrong.body, /payguard_certificate_mismatch/);
        assert.equal(await mock.count(), before, 'the rail saw nothing');
        const right = await call(pinnedCert, pinnedTok.token);
        assert.equal(right.status, 200, right.body);
        const noToken = await call(pinnedCert);
        assert.equal(noToken.status, 401, 'the pinned agent still needs its token');
    } finally {
        const r = await pg.stop();
        assert.equal(r.code, 0);
    }
});
