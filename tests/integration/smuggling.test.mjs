// Request smuggling and protocol abuse on the agent port. Every vector is an
// otherwise valid, authenticated request: if payguard let it through, the rail
// would record it. Each must get payguard's own 400 (Stripe-shaped, with
// Payguard-Reason), the connection must be closed, and the rail must have
// seen nothing. Also the size limits (431, 413) and the slow-client timeouts.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startStack, testWithLogs, stripeShapedError, sleep } from './lib/harness.mjs';
import { rawExchange, rawRequestBytes, request, responsesAtLeast } from './lib/http.mjs';

const LIMITS = {
    header_bytes: 4096,
    max_headers: 20,
    body_bytes: 2048,
    header_timeout_ms: 1500,
    body_timeout_ms: 1500,
    idle_timeout_ms: 1500,
};

let s;
const test = testWithLogs(() => s?.pg);

before(async () => {
    s = await startStack('smuggling', { limits: LIMITS });
    // Warm the token cache so no vector is slowed by bcrypt.
    const warm = await request(s.pg.port, { path: '/v1/balance', headers: s.auth });
    assert.equal(warm.status, 200, warm.body);
});
after(async () => {
    s?.pg.kill();
    await s?.mock.stop();
});

const AUTH = () => `Authorization: Bearer ${s.token.token}`;
const FORM = 'Content-Type: application/x-www-form-urlencoded';
const BODY = 'amount=1000&currency=usd';

/* Sends `bytes`, expects one payguard answer with `status`/`code`, the
 * connection closed by payguard, and no new request at the rail. */
async function refused(bytes, status = 400, code = 'payguard_bad_request') {
    const before = await s.mock.count();
    const ex = await rawExchange(s.pg.port, bytes);
    assert.equal(ex.timedOut, false, `payguard must close the connection; got so far:\n${ex.text}`);
    assert.ok(ex.responses.length >= 1, `an answer before the close, got:\n${JSON.stringify(ex.text)}`);
    assert.equal(ex.responses.length, 1, `exactly one answer, got:\n${ex.text}`);
    stripeShapedError(assert, ex.responses[0], status, code);
    assert.equal(ex.responses[0].header('connection'), 'close');
    // Let anything that slipped through reach the rail before counting.
    await sleep(30);
    assert.equal(await s.mock.count(), before, 'the rail saw nothing');
    return ex.responses[0];
}

let keys = 0;
const post = (headers, body = BODY) => rawRequestBytes('POST /v1/payment_intents HTTP/1.1',
    ['Host: 127.0.0.1', AUTH(), FORM, `Idempotency-Key: smuggle-${process.pid}-${++keys}`, ...headers], body);
const get = (headers, line = 'GET /v1/balance HTTP/1.1') => rawRequestBytes(line, [AUTH(), ...headers]);

const HIDDEN = 'GET /v1/balance HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
    'Authorization: Bearer PLACEHOLDER\r\n\r\n';
const hidden = () => HIDDEN.replace('PLACEHOLDER', s.token.token);

test('baseline: the same request shapes without the defect pass (so the vectors below are meaningful)', async () => {
    const before = await s.mock.count();
    const ex = await rawExchange(s.pg.port, post([`Content-Length: ${BODY.length}`]),
                                 { until: responsesAtLeast(1) });
    assert.equal(ex.responses[0]?.status, 200, ex.text);
    const ex2 = await rawExchange(s.pg.port, get(['Host: 127.0.0.1']), { until: responsesAtLeast(1) });
    assert.equal(ex2.responses[0]?.status, 200, ex2.text);
    assert.equal(await s.mock.count(), before + 2);
});

test('CL.TE: Content-Length then Transfer-Encoding', async () => {
    await refused(post([`Content-Length: ${BODY.length + 5}`, 'Transfer-Encoding: chunked'],
                       `${BODY.length.toString(16)}\r\n${BODY}\r\n0\r\n\r\n`));
});

test('TE.CL: Transfer-Encoding then Content-Length', async () => {
    await refused(post(['Transfer-Encoding: chunked', 'Content-Length: 4'],
                       `${BODY.length.toString(16)}\r\n${BODY}\r\n0\r\n\r\n`));
});

test('CL.TE with a second request hidden in the body never yields a rail request', async () => {
    const smuggled = hidden();
    const body = `0\r\n\r\n${smuggled}`;
    await refused(rawRequestBytes('POST /v1/payment_intents HTTP/1.1', [
        'Host: 127.0.0.1', AUTH(), FORM, `Idempotency-Key: smuggle-${process.pid}-${++keys}`,
        `Content-Length: ${body.length}`, 'Transfer-Encoding: chunked',
    ], body));
});

test('TE.CL with a second request hidden after a short Content-Length', async () => {
    const smuggled = hidden();
    const chunk = `${BODY}&x=${'y'.repeat(4)}`;
    const body = `${chunk.length.toString(16)}\r\n${chunk}\r\n0\r\n\r\n`;
    await refused(Buffer.concat([
        rawRequestBytes('POST /v1/payment_intents HTTP/1.1', [
            'Host: 127.0.0.1', AUTH(), FORM, `Idempotency-Key: smuggle-${process.pid}-${++keys}`,
            'Transfer-Encoding: chunked', 'Content-Length: 3',
        ], body),
        Buffer.from(smuggled),
    ]));
});

test('duplicate Content-Length', async () => {
    await refused(post([`Content-Length: ${BODY.length}`, `Content-Length: ${BODY.length}`]));
});

test('Content-Length list "N, N"', async () => {
    await refused(post([`Content-Length: ${BODY.length}, ${BODY.length}`]));
});

test('Content-Length with a sign or a space before the colon', async () => {
    await refused(post([`Content-Length: +${BODY.length}`]));
    await refused(post([`Content-Length : ${BODY.length}`]));
});

test('Transfer-Encoding: gzip, chunked', async () => {
    await refused(post(['Transfer-Encoding: gzip, chunked'], `${BODY.length.toString(16)}\r\n${BODY}\r\n0\r\n\r\n`));
});

test('Transfer-Encoding: chunked twice', async () => {
    await refused(post(['Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'],
                       `${BODY.length.toString(16)}\r\n${BODY}\r\n0\r\n\r\n`));
});

test('Transfer-Encoding on HTTP/1.0', async () => {
    await refused(rawRequestBytes('POST /v1/payment_intents HTTP/1.0', [
        'Host: 127.0.0.1', AUTH(), FORM, `Idempotency-Key: smuggle-${process.pid}-${++keys}`, 'Transfer-Encoding: chunked',
    ], `${BODY.length.toString(16)}\r\n${BODY}\r\n0\r\n\r\n`));
});

test('invalid chunk size', async () => {
    await refused(post(['Transfer-Encoding: chunked'], `zz\r\n${BODY}\r\n0\r\n\r\n`));
});

test('chunked trailers', async () => {
    await refused(post(['Transfer-Encoding: chunked'],
                       `${BODY.length.toString(16)}\r\n${BODY}\r\n0\r\nX-Trailer: sneaky\r\n\r\n`));
});

test('bare LF line endings', async () => {
    await refused(Buffer.from(`GET /v1/balance HTTP/1.1\nHost: 127.0.0.1\n${AUTH()}\n\n`));
});

test('a bare LF ending one header line', async () => {
    await refused(Buffer.from(`GET /v1/balance HTTP/1.1\r\nHost: 127.0.0.1\nX-A: b\r\n${AUTH()}\r\n\r\n`));
});

test('a bare CR inside the header block', async () => {
    await refused(Buffer.from(`GET /v1/balance HTTP/1.1\r\nHost: 127.0.0.1\rX-A: b\r\n${AUTH()}\r\n\r\n`));
});

test('obs-fold (a header line starting with white space)', async () => {
    await refused(get(['Host: 127.0.0.1', 'X-Folded: a', ' continued']));
    await refused(get(['Host: 127.0.0.1', 'X-Folded: a', '\tcontinued']));
});

test('no Host header on HTTP/1.1', async () => {
    await refused(get([]));
});

test('two Host headers', async () => {
    await refused(get(['Host: 127.0.0.1', 'Host: evil.example']));
});

test('absolute-form request target', async () => {
    await refused(get(['Host: 127.0.0.1'], 'GET http://127.0.0.1/v1/balance HTTP/1.1'));
    await refused(get(['Host: api.stripe.com'], 'GET https://api.stripe.com/v1/balance HTTP/1.1'));
});

test('asterisk-form and authority-form targets, CONNECT', async () => {
    await refused(get(['Host: 127.0.0.1'], 'OPTIONS * HTTP/1.1'));
    await refused(get(['Host: api.stripe.com:443'], 'CONNECT api.stripe.com:443 HTTP/1.1'));
});

test('Upgrade: websocket', async () => {
    await refused(get(['Host: 127.0.0.1', 'Connection: Upgrade', 'Upgrade: websocket',
                       'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 13']));
});

test('h2c upgrade and the HTTP/2 preface', async () => {
    await refused(get(['Host: 127.0.0.1', 'Connection: Upgrade, HTTP2-Settings', 'Upgrade: h2c',
                       'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA']));
    await refused(get(['Host: 127.0.0.1', 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA']));
    await refused(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'));
});

test('a NUL byte in a header value and in a header name', async () => {
    await refused(get(['Host: 127.0.0.1', 'X-Nul: a\0b']));
    await refused(get(['Host: 127.0.0.1', 'X-N\0ul: ab']));
});

test('a non-token character in a header name, and a header line without a colon', async () => {
    await refused(get(['Host: 127.0.0.1', 'X(Bad): v']));
    await refused(get(['Host: 127.0.0.1', 'NoColonHere']));
});

test('HTTP/2.0 and a malformed version in the request line', async () => {
    await refused(get(['Host: 127.0.0.1'], 'GET /v1/balance HTTP/2.0'));
    await refused(get(['Host: 127.0.0.1'], 'GET /v1/balance HTX/1.1'));
});

test('a request that starts with an empty line', async () => {
    await refused(Buffer.concat([Buffer.from('\r\n'), get(['Host: 127.0.0.1'])]));
});

test('Expect with anything but 100-continue is refused (417)', async () => {
    await refused(post([`Content-Length: ${BODY.length}`, 'Expect: 200-ok']), 417, 'payguard_bad_request');
});

// --- limits -------------------------------------------------------------

test('431 when the header block is over header_bytes', async () => {
    await refused(get(['Host: 127.0.0.1', `X-Big: ${'a'.repeat(LIMITS.header_bytes)}`]),
                  431, 'payguard_headers_too_large');
});

test('431 when a request line alone is over header_bytes', async () => {
    await refused(get(['Host: 127.0.0.1'], `GET /v1/balance?q=${'a'.repeat(LIMITS.header_bytes)} HTTP/1.1`),
                  431, 'payguard_headers_too_large');
});

test('431 when there are more than max_headers header lines', async () => {
    const many = Array.from({ length: LIMITS.max_headers + 1 }, (_, i) => `X-H${i}: ${i}`);
    await refused(get(['Host: 127.0.0.1', ...many]), 431, 'payguard_headers_too_large');
});

test('max_headers header lines exactly are accepted', async () => {
    const before = await s.mock.count();
    // Host and Authorization count too.
    const many = Array.from({ length: LIMITS.max_headers - 2 }, (_, i) => `X-H${i}: ${i}`);
    const ex = await rawExchange(s.pg.port, get(['Host: 127.0.0.1', ...many]), { until: responsesAtLeast(1) });
    assert.equal(ex.responses[0]?.status, 200, ex.text);
    assert.equal(await s.mock.count(), before + 1);
});

test('413 when Content-Length is over body_bytes (refused before the body is read)', async () => {
    // Only the head is sent: payguard must answer without waiting for the body.
    await refused(post([`Content-Length: ${LIMITS.body_bytes + 1}`], ''), 413, 'payguard_body_too_large');
});

test('413 when a chunked body grows over body_bytes', async () => {
    const chunk = 'a'.repeat(1000);
    const body = Array.from({ length: 3 }, () => `${chunk.length.toString(16)}\r\n${chunk}\r\n`).join('') + '0\r\n\r\n';
    await refused(post(['Transfer-Encoding: chunked'], body), 413, 'payguard_body_too_large');
});

test('a body of exactly body_bytes is accepted', async () => {
    const before = await s.mock.count();
    const body = `amount=1000&currency=usd&description=${'x'.repeat(LIMITS.body_bytes - 'amount=1000&currency=usd&description='.length)}`;
    assert.equal(body.length, LIMITS.body_bytes);
    const ex = await rawExchange(s.pg.port, post([`Content-Length: ${body.length}`], body),
                                 { until: responsesAtLeast(1) });
    assert.equal(ex.responses[0]?.status, 200, ex.text);
    assert.equal(await s.mock.count(), before + 1);
    const last = (await s.mock.requests()).at(-1);
    assert.equal(last.body, body);
});

// --- slow clients ----------------------------------------------------------

test('slowloris: headers one byte per second are cut off within header_timeout_ms', async () => {
    const before = await s.mock.count();
    const bytes = get(['Host: 127.0.0.1', 'X-Slow: ' + 'z'.repeat(40)]);
    // The request line arrives at once, then one byte a second: the timer
    // must not be re-armed by each byte.
    const first = bytes.subarray(0, 20);
    const drip = Array.from(bytes.subarray(20), (b) => Buffer.from([b]));
    const ex = await rawExchange(s.pg.port, [first, ...drip], {
        gapMs: 1000, timeoutMs: LIMITS.header_timeout_ms + 4000,
    });
    assert.equal(ex.timedOut, false, `still open after ${ex.elapsedMs} ms; header_timeout_ms is ${LIMITS.header_timeout_ms}`);
    assert.ok(ex.closed);
    if (ex.responses.length) stripeShapedError(assert, ex.responses[0], 408, 'payguard_request_timeout');
    assert.equal(await s.mock.count(), before, 'the rail saw nothing');
});

test('a body that stalls is cut off within body_timeout_ms with a 408', async () => {
    const before = await s.mock.count();
    const head = post([`Content-Length: ${BODY.length}`], '');
    const ex = await rawExchange(s.pg.port, [head, Buffer.from(BODY.slice(0, 5))], {
        timeoutMs: LIMITS.body_timeout_ms + 4000,
    });
    assert.equal(ex.timedOut, false, `still open after ${ex.elapsedMs} ms`);
    assert.equal(ex.responses.length, 1, ex.text);
    stripeShapedError(assert, ex.responses[0], 408, 'payguard_request_timeout');
    assert.equal(await s.mock.count(), before, 'the rail saw nothing');
});

test('an idle connection is closed after idle_timeout_ms, before and between requests', async () => {
    const silent = await rawExchange(s.pg.port, [], { timeoutMs: LIMITS.idle_timeout_ms + 4000 });
    assert.equal(silent.timedOut, false, `a connection that never sent a byte is still open after ${silent.elapsedMs} ms`);
    assert.equal(silent.text, '', 'nothing is sent to a connection that never asked');
    const used = await rawExchange(s.pg.port, get(['Host: 127.0.0.1']), { timeoutMs: LIMITS.idle_timeout_ms + 4000 });
    assert.equal(used.timedOut, false, `an idle kept-alive connection is still open after ${used.elapsedMs} ms`);
    assert.equal(used.responses.length, 1, used.text);
    assert.equal(used.responses[0].status, 200);
});

test('the proxy still serves normally after all of the above', async () => {
    const res = await request(s.pg.port, { path: '/v1/balance', headers: s.auth });
    assert.equal(res.status, 200, res.body);
});

test('payguard stops cleanly on SIGTERM', async () => {
    const { code, signal } = await s.pg.stop();
    assert.equal(signal, null, s.pg.tail());
    assert.equal(code, 0, `exit code ${code} (86 = leak under ASan)\n${s.pg.tail(80)}`);
});
