"""Split models against the measured sweep (sweep.json): for each model,
the measured time of the split count it picks over the best count's, per
batch. m0 is the runtime's model before the empty-CTA cost; mk(e) adds e
keys per launched CTA spread over the slots (the runtime takes e = 64, one
loop iteration, and candidates up to 32 waves). 32/8 heads, D = 128, 264
slots (132 SMs x 2), 64 keys per loop iteration.

    python3 fit_cost_model.py sweep.json
"""
import json, sys
R = json.load(open(sys.argv[1]))
STEP, SLOTS, CPS = 64, 264, 8
def chunk_len(keys, s, least=0, step=STEP):
    c = max(-(-keys // s), least); return -(-c // step) * step
def parts(lens, c):
    out = []
    for l in lens:
        n = -(-l // c)
        for i in range(n): out.append(min(c, l - i * c))
    return out
def m0(lens, s):
    c = chunk_len(max(lens), s); busy = CPS * len(parts(lens, c))
    return -(-busy // SLOTS) * (c + STEP)
def m1(lens, s, empty=8):
    c = chunk_len(max(lens), s); p = parts(lens, c)
    work = CPS * sum(x + STEP for x in p) + CPS * (len(lens) * s - len(p)) * empty
    return max(c + STEP, work / SLOTS)
def m2(lens, s, empty=8):
    c = chunk_len(max(lens), s); p = parts(lens, c)
    work = CPS * sum(x + STEP for x in p) + CPS * (len(lens) * s - len(p)) * empty
    return work / SLOTS + c + STEP
def m3(lens, s, empty=8):  # waves of busy + fluid mix: ceil waves but last partial wave weighted
    c = chunk_len(max(lens), s); p = parts(lens, c)
    work = CPS * sum(x + STEP for x in p) + CPS * (len(lens) * s - len(p)) * empty
    return max(c + STEP, work / SLOTS) + 0.5 * (c + STEP)
def cap(lens, waves=16):
    L = max(lens); ctas = len(lens) * CPS
    return max(1, min(L // (4 * STEP), -(-waves * SLOTS // ctas), 256))
for name, m in [("m0", m0), ("m1", m1), ("m2", m2), ("m3", m3)]:
    tot = 0; line = []
    for r in R:
        lens = r["lens"]; P = {int(k): v for k, v in r["planned"].items()}
        cands = [s for s in P if s <= cap(lens)]
        pick = min(cands, key=lambda s: (m(lens, s), s))
        best = min(P[s] for s in cands)
        tot += P[pick] / best
        line.append(f"{r['case'][:14]} s={pick} {P[pick]:.1f}/{best:.1f}")
    print(name, f"{tot/len(R):.4f}", "; ".join(line))
def mk(e):
    def m(lens, s):
        c = chunk_len(max(lens), s); busy = CPS * len(parts(lens, c))
        allc = CPS * len(lens) * s
        return -(-busy // SLOTS) * (c + STEP) + e * allc / SLOTS
    return m
import itertools
for W in (16, 32, 64):
  for e in (4, 8, 16, 32, 64):
    m = mk(e); tot = 0; worst = 0; line=[]
    for r in R:
        lens = r["lens"]; P = {int(k): v for k, v in r["planned"].items()}
        cands = [s for s in P if s <= cap(lens, W)]
        pick = min(cands, key=lambda s: (m(lens, s), s))
        best = min(P.values())
        tot += P[pick] / best; worst = max(worst, P[pick]/best)
        line.append(f"{r['case'][:10]} s={pick} {P[pick]/best:.3f}")
    print(W, e, f"{tot/len(R):.4f} worst {worst:.3f}", "; ".join(line))
