// HTTP helpers for the integration tests: a node:http client for ordinary
// requests, a raw-socket exchange that sends exact bytes (smuggling, slow
// clients, pipelining) and a small HTTP/1.1 response parser for what comes
// back on a raw socket. Everything talks to 127.0.0.x and every wait is bounded.
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';

// Sanitizers slow payguard down a few times, valgrind tens of times.
export const WAIT_MS = { asan: 20000, tsan: 20000, valgrind: 90000 }[process.env.PAYGUARD_MODE] ?? 10000;

/* Sends one request with node:http (or node:https when `tls` is given).
 * Resolves {status, headers, body, json, socket}; rejects on a socket error
 * or when no answer arrives within timeoutMs. */
export function request(port, {
    method = 'GET', path = '/', headers = {}, body, agent = false, localAddress,
    host = '127.0.0.1', tls, timeoutMs = WAIT_MS,
} = {}) {
    return new Promise((resolve, reject) => {
        const mod = tls ? https : http;
        const opts = { host, port, method, path, headers, agent, localAddress };
        if (tls) Object.assign(opts, tls);
        const req = mod.request(opts, (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('error', reject);
            res.on('end', () => {
                clearTimeout(timer);
                const text = Buffer.concat(chunks).toString('utf8');
                let json;
                try { json = JSON.parse(text); } catch { json = undefined; }
                resolve({ status: res.statusCode, headers: res.headers, rawHeaders: res.rawHeaders,
                          body: text, json, socket: req.socket });
            });
        });
        const timer = setTimeout(() => {
            req.destroy(new Error(`no answer from 127.0.0.1:${port} ${method} ${path} within ${timeoutMs} ms`));
        }, timeoutMs);
        req.on('error', (e) => { clearTimeout(timer); reject(e); });
        if (body !== undefined) req.write(body);
        req.end();
    });
}

/* A keep-alive agent limited to one socket, so a test can check that every
 * request went over the same connection. */
export function keepAliveAgent(maxSockets = 1) {
    return new http.Agent({ keepAlive: true, maxSockets });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* Opens a raw TCP connection, writes `writes` (a Buffer/string or an array of
 * them, with `gapMs` between array items) and collects everything the server
 * sends until it closes, `until(buf)` is true, or timeoutMs passes.
 * Resolves {buf, text, closed, reset, timedOut, elapsedMs, responses}. */
export function rawExchange(port, writes, {
    until, timeoutMs = WAIT_MS, gapMs = 0, localAddress, host = '127.0.0.1',
} = {}) {
    const list = Array.isArray(writes) ? writes : [writes];
    return new Promise((resolve, reject) => {
        const started = Date.now();
        const sock = net.connect({ host, port, localAddress });
        const chunks = [];
        let done = false;
        let reset = false;
        let closed = false;
        const finish = (timedOut) => {
            if (done) return;
            done = true;
            clearTimeout(timer);
            const buf = Buffer.concat(chunks);
            sock.destroy();
            resolve({ buf, text: buf.toString('latin1'), closed, reset, timedOut,
                      elapsedMs: Date.now() - started, responses: parseResponses(buf).responses });
        };
        const timer = setTimeout(() => finish(true), timeoutMs);
        sock.on('data', (d) => {
            chunks.push(d);
            if (until && until(Buffer.concat(chunks))) finish(false);
        });
        sock.on('end', () => { closed = true; finish(false); });
        sock.on('close', () => { closed = true; finish(false); });
        sock.on('error', (e) => {
            if (e.code === 'ECONNRESET' || e.code === 'EPIPE') {
                reset = true;
                closed = true;
                finish(false);
            } else if (!done) {
                done = true;
                clearTimeout(timer);
                reject(e);
            }
        });
        sock.on('connect', async () => {
            for (let i = 0; i < list.length && !done; i++) {
                if (i > 0 && gapMs) await sleep(gapMs);
                if (done || sock.destroyed) break;
                sock.write(list[i]);
            }
        });
    });
}

/* Waits until `n` complete responses are in the buffer (helper for `until`). */
export const responsesAtLeast = (n) => (buf) => parseResponses(buf).responses.length >= n;

/* Parses consecutive HTTP/1.1 responses out of `buf`. A response framed by
 * the end of the connection (no length, not chunked) is returned with
 * `eof: true`. Returns {responses, rest}. Each response:
 * {status, reason, headers (lower-case name → array of values), rawHead,
 *  body (Buffer), chunked, json}. */
export function parseResponses(buf) {
    const responses = [];
    let off = 0;
    for (;;) {
        const headEnd = buf.indexOf('\r\n\r\n', off, 'latin1');
        if (headEnd < 0) break;
        const rawHead = buf.subarray(off, headEnd).toString('latin1');
        const lines = rawHead.split('\r\n');
        const m = /^HTTP\/1\.[01] (\d{3}) ?(.*)$/.exec(lines[0]);
        if (!m) break;
        const headers = {};
        for (const line of lines.slice(1)) {
            const i = line.indexOf(':');
            if (i <= 0) continue;
            const name = line.slice(0, i).toLowerCase();
            (headers[name] ??= []).push(line.slice(i + 1).trim());
        }
        const status = Number(m[1]);
        let p = headEnd + 4;
        let body = Buffer.alloc(0);
        let chunked = false;
        let eof = false;
        const te = (headers['transfer-encoding'] ?? []).join(',').toLowerCase();
        if (status < 200 || status === 204 || status === 304) {
            // no body
        } else if (te.includes('chunked')) {
            chunked = true;
            const parts = [];
            let complete = false;
            for (;;) {
                const le = buf.indexOf('\r\n', p, 'latin1');
                if (le < 0) break;
                const size = parseInt(buf.subarray(p, le).toString('latin1').split(';')[0], 16);
                if (Number.isNaN(size)) break;
                if (size === 0) {
                    // payguard never sends trailers: the last chunk is "0\r\n\r\n"
                    if (buf.length >= le + 4 && buf.subarray(le, le + 4).toString('latin1') === '\r\n\r\n') {
                        p = le + 4;
                        complete = true;
                    }
                    break;
                }
                if (buf.length < le + 2 + size + 2) break;
                parts.push(buf.subarray(le + 2, le + 2 + size));
                p = le + 2 + size + 2;
            }
            if (!complete) break;
            body = Buffer.concat(parts);
        } else if (headers['content-length']) {
            const n = Number(headers['content-length'][0]);
            if (buf.length < p + n) break;
            body = buf.subarray(p, p + n);
            p += n;
        } else {
            body = buf.subarray(p);
            p = buf.length;
            eof = true;
        }
        let json;
        try { json = JSON.parse(body.toString('utf8')); } catch { json = undefined; }
        responses.push({ status, reason: m[2], headers, rawHead, body, chunked, eof, json,
                         header: (n) => headers[n.toLowerCase()]?.[0] });
        off = p;
        if (eof) break;
    }
    return { responses, rest: buf.subarray(off) };
}

/* Builds a raw request with CRLF line ends from a request line and header
 * lines; `body` is appended as is. */
export function rawRequestBytes(requestLine, headerLines, body = '') {
    return Buffer.concat([
        Buffer.from([requestLine, ...headerLines].join('\r\n') + '\r\n\r\n', 'latin1'),
        Buffer.isBuffer(body) ? body : Buffer.from(body, 'latin1'),
    ]);
}
