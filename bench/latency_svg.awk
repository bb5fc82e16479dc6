# Latency percentiles as an SVG, from bench/run.sh's CSV (bench/out/results.csv):
# one panel per scenario (reads on the first row, payments on the second), one line
# per target through its p50, p90, p99 and p99.9 (the medians of the rounds), on a
# log scale of its own per panel. Plain awk (mawk or gawk), no plotting package.
#
#   awk -v title='...' -f bench/latency_svg.awk bench/out/results.csv > latency.svg

BEGIN {
    FS = ","
    nread = split("c1 c32 c256", READS, " ")
    npay = split("pay_c1 pay_c32 pay_c64 pay_c256", PAYS, " ")
    ntg = split("direct nginx1 nginx_auto payguard", TG, " ")
    COLOR["direct"] = "#7f7f7f"; NAME["direct"] = "direct (mock rail)"
    COLOR["nginx1"] = "#1f77b4"; NAME["nginx1"] = "nginx, 1 worker"
    COLOR["nginx_auto"] = "#8fbcdf"; NAME["nginx_auto"] = "nginx, auto workers"
    COLOR["payguard"] = "#d62728"; NAME["payguard"] = "payguard"
    split("p50 p90 p99 p99.9", PN, " ")
    M125[0] = 1; M125[1] = 2; M125[2] = 5
    LN10 = log(10)
}

# Median rows only; the pinned scenario is a capacity figure, not a latency one.
$3 == "median" && $2 !~ /_pinned$/ {
    k = $2 SUBSEP $4
    for (i = 1; i <= 4; i++) {
        v = $(7 + i)
        V[k, i] = (v != "" && v + 0 > 0) ? v + 0 : 0
        if (V[k, i] > 0) { HAVE[$2] = 1; HAVET[$4] = 1 }
    }
    CONNS[$2] = $5
}

function esc(s) { gsub(/&/, "\\&amp;", s); gsub(/</, "\\&lt;", s); gsub(/>/, "\\&gt;", s); return s }
# The k-th value of the 1-2-5 series: 1, 2, 5, 10, 20, 50, ... (µs).
function tick(k,   d, v) { d = int(k / 3); v = M125[k % 3]; while (d-- > 0) v *= 10; return v }
function label(v) { return v < 1000 ? v " µs" : (v / 1000) " ms" }
function ylog(v) { return log(v) / LN10 }

function panel(sc, px, py, title,   lo, hi, t, i, k, klo, khi, y0, y1, x, y, pts, n, ax, ay, aw, ah) {
    ax = px + 56; ay = py + 26; aw = PW - 56 - 12; ah = PH - 26 - 34
    lo = 0; hi = 0
    for (t = 1; t <= ntg; t++)
        for (i = 1; i <= 4; i++) {
            v = V[sc, TG[t], i] + 0
            if (v <= 0) continue
            if (lo == 0 || v < lo) lo = v
            if (v > hi) hi = v
        }
    for (klo = 0; tick(klo + 1) <= lo; klo++) ;
    for (khi = klo + 1; tick(khi) < hi; khi++) ;
    y0 = ylog(tick(klo)); y1 = ylog(tick(khi))
    printf "<g>\n<text x=\"%d\" y=\"%d\" class=\"pt\">%s</text>\n", ax, py + 16, esc(title)
    printf "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" class=\"frame\"/>\n", ax, ay, aw, ah
    # Grid and labels: every 1-2-5 step, or only 1s when there are too many.
    for (k = klo; k <= khi; k++) {
        if (khi - klo > 7 && k % 3 != 0 && k != klo && k != khi) continue
        y = ay + ah - (ylog(tick(k)) - y0) / (y1 - y0) * ah
        printf "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>", ax, ax + aw, y, y
        printf "<text x=\"%d\" y=\"%.1f\" class=\"yl\">%s</text>\n", ax - 4, y + 3.5, label(tick(k))
    }
    for (i = 1; i <= 4; i++) {
        x = ax + (i - 0.5) * aw / 4
        printf "<text x=\"%.1f\" y=\"%d\" class=\"xl\">%s</text>\n", x, ay + ah + 14, PN[i]
    }
    for (t = 1; t <= ntg; t++) {
        pts = ""; n = 0
        for (i = 1; i <= 4; i++) {
            v = V[sc, TG[t], i] + 0
            if (v <= 0) continue
            x = ax + (i - 0.5) * aw / 4
            y = ay + ah - (ylog(v) - y0) / (y1 - y0) * ah
            pts = pts sprintf("%.1f,%.1f ", x, y); n++
            printf "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>%s %s: %s µs</title></circle>\n", \
                x, y, COLOR[TG[t]], NAME[TG[t]], PN[i], v
        }
        if (n > 1)
            printf "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"/>\n", pts, COLOR[TG[t]]
    }
    print "</g>"
}

END {
    PW = 270; PH = 220; HEAD = 58
    nr = 0; np = 0
    for (i = 1; i <= nread; i++) if (READS[i] in HAVE) ROW1[++nr] = READS[i]
    for (i = 1; i <= npay; i++) if (PAYS[i] in HAVE) ROW2[++np] = PAYS[i]
    cols = nr > np ? nr : np
    if (cols == 0) { print "latency_svg.awk: no median rows in the CSV" > "/dev/stderr"; exit 1 }
    rows = (nr > 0) + (np > 0)
    W = cols * PW + 20; if (W < 720) W = 720
    H = HEAD + rows * PH + 10
    printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"11\">\n", W, H, W, H
    print "<style>.frame{fill:none;stroke:#999}.grid{stroke:#e3e3e3}.yl{text-anchor:end;fill:#555}" \
          ".xl{text-anchor:middle;fill:#555}.pt{font-weight:bold;fill:#222}.t{font-size:14px;font-weight:bold}</style>"
    printf "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", W, H
    printf "<text x=\"10\" y=\"20\" class=\"t\">Latency percentiles, client side (medians of the rounds; log scale per panel)</text>\n"
    printf "<text x=\"10\" y=\"36\" fill=\"#555\">%s. Reads: GET /v1/balance; payments: POST /v1/payment_intents, a fresh Idempotency-Key each.</text>\n", esc(title)
    x = 10
    for (t = 1; t <= ntg; t++) {
        if (!(TG[t] in HAVET)) continue
        printf "<line x1=\"%d\" x2=\"%d\" y1=\"49\" y2=\"49\" stroke=\"%s\" stroke-width=\"3\"/>", x, x + 18, COLOR[TG[t]]
        printf "<text x=\"%d\" y=\"53\">%s</text>\n", x + 24, NAME[TG[t]]
        x += 24 + length(NAME[TG[t]]) * 6.5 + 18
    }
    y = HEAD
    if (nr > 0) {
        for (i = 1; i <= nr; i++)
            panel(ROW1[i], 10 + (i - 1) * PW, y, "reads, " CONNS[ROW1[i]] (CONNS[ROW1[i]] == 1 ? " connection" : " connections"))
        y += PH
    }
    for (i = 1; i <= np; i++)
        panel(ROW2[i], 10 + (i - 1) * PW, y, "payments, " CONNS[ROW2[i]] (CONNS[ROW2[i]] == 1 ? " connection" : " connections"))
    print "</svg>"
}
