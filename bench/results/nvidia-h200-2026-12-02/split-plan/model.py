# The runtime's split model (lib/Runtime/Decoder.cpp SplitModel) as it was
# when the plan was first written (before the cost of empty CTAs and the
# wider candidates: bench/NOTES.md 41's expectation) on the bench's ragged
# lengths: 32/8 D128 tensor-core kernel, 8 CTAs a sequence, 264 slots
# (132 SMs x 2), 64 keys an iteration. Output: model.txt.
import torch
def chunk_len(keys, s, least, step):
    c = max(-(-keys // s), least); return -(-c // step) * step
def plan(lens, slots=264, cps=8, step=64, even=False):
    L = max(lens); ctas = len(lens) * cps
    lim = max(1, min(L // (4 * step), -(-4 * slots // ctas), 256))
    best = None
    for s in range(1, lim + 1):
        c = chunk_len(L, s, 0, step)
        busy = ctas * (-(-L // c)) if even else cps * sum(-(-l // c) for l in lens)
        waves = -(-busy // slots)
        cost = waves * (c + step)
        if best is None or cost < best[0]:
            best = (cost, s, c, busy, waves)
    return best
for B, S in [(32, 4096), (8, 8192), (64, 4096)]:
    g = torch.Generator(device="cpu").manual_seed(0)
    lens = torch.randint(1, 2 * S + 1, (B,), generator=g).tolist()
    e, p = plan(lens, even=True), plan(lens)
    print(f"B={B} max {max(lens)} mean {sum(lens)/B:.0f}: even splits {e[1]} chunk {e[2]} busy {e[3]} waves {e[4]} cost {e[0]}; "
          f"planned splits {p[1]} chunk {p[2]} busy {p[3]} waves {p[4]} cost {p[0]}; cost ratio {p[0]/e[0]:.3f}")
