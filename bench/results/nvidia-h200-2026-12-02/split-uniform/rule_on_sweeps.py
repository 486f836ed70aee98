"""The runtime's split model against the measured sweeps: `old` the waves
alone (entry 41's model), `new` the streaming cost in place of the waves'
cost, and the rule the runtime took (bench/NOTES.md 44: the waves' pick
against no split under the streaming cost). Each line: the count picked
and its measured time over the best count's. Uniform cases from
sweep-before.json (even chunks; CTAs per split and slots per case as the
kernels have them on an H200), ragged ones from ../split-plan/sweep.json
(planned chunks, 32/8 heads, 264 slots).

    python3 rule_on_sweeps.py
"""
import json, math, os
HERE = os.path.dirname(os.path.abspath(__file__))
STEP=64; SMS=132
def cl(keys, s, least=0): c=max(-(-keys//s), least); return -(-c//STEP)*STEP
def cost_old(lens, s, cps, slots, planned):
    L=max(lens); c=cl(L,s) if s>1 else cl(L,1)
    busy=cps*sum(-(-l//c) for l in lens) if planned else cps*len(lens)*(-(-L//c))
    t=-(-busy//slots)*(c+STEP)
    if planned: t+= -(-(cps*len(lens)*s*STEP)//slots)
    return t
def cost_new(lens, s, cps, slots, planned, merge=2*STEP):
    L=max(lens); c=cl(L,s)
    busy=cps*sum(-(-l//c) for l in lens) if planned else cps*len(lens)*(-(-L//c))
    t=-(-busy//slots)*(c+STEP)
    t=max(t, -(-busy//SMS)*c)
    if planned: t+= -(-(cps*len(lens)*s*STEP)//slots)
    if s>1: t+=merge
    return t
def cap(lens, cps, slots, waves):
    L=max(lens); ctas=len(lens)*cps
    return max(1, min(L//(4*STEP), -(-waves*slots//ctas), 256))
# uniform sweep: (case -> cps, slots)
U=json.load(open(os.path.join(HERE, 'sweep-before.json')))
meta={'B=32 S=4096 28/4 D=128':(4,264),'B=32 S=4096 32/8 D=64':(8,528),'B=64 S=4096 32/1 D=128':(1,264),
 'B=64 S=4096 8/1 D=256':(1,132),'B=64 S=4096 16/1 D=256':(1,132),'B=32 S=4096 32/8 D=256':(8,132),
 'B=8 S=8192 32/8 D=128':(8,264),'B=1 S=32768 32/8 D=128':(8,264),'B=32 S=4096 32/8 D=128':(8,264)}
for name,m in (("old",cost_old),("new",cost_new)):
    tot=0;worst=0;line=[]
    for r in U:
        b=int(r['case'].split()[0][2:]); S=int(r['case'].split()[1][2:]); lens=[S]*b
        cps,slots=meta[r['case']]
        P={int(k):v for k,v in r['splits'].items()}
        cands=[s for s in P if s<=cap(lens,cps,slots,4)]
        pick=min(cands,key=lambda s:(m(lens,s,cps,slots,False),s))
        best=min(P.values()); tot+=P[pick]/best; worst=max(worst,P[pick]/best)
        line.append(f"{r['case'][:22]} s={pick} {P[pick]/best:.3f}")
    print("uniform",name,f"{tot/len(U):.4f} worst {worst:.3f}"); print("  "+"\n  ".join(line))
R=json.load(open(os.path.join(HERE, '..', 'split-plan', 'sweep.json')))
for name,m in (("old",cost_old),("new",cost_new)):
    tot=0;worst=0;line=[]
    for r in R:
        lens=r['lens']; P={int(k):v for k,v in r['planned'].items()}
        cands=[s for s in P if s<=cap(lens,8,264,32)]
        pick=min(cands,key=lambda s:(m(lens,s,8,264,True),s))
        best=min(P.values()); tot+=P[pick]/best; worst=max(worst,P[pick]/best)
        line.append(f"{r['case'][:20]} s={pick} {P[pick]/best:.3f} (rt {r['runtime_plan_us']/best:.3f})")
    print("ragged",name,f"{tot/len(R):.4f} worst {worst:.3f}"); print("  "+"\n  ".join(line))
def bounded(lens,s,cps,slots,planned):
    L=max(lens); c=cl(L,s)
    busy=cps*sum(-(-l//c) for l in lens) if planned else cps*len(lens)*(-(-L//c))
    return max(cost_old(lens,s,cps,slots,planned), -(-busy//SMS)*c) + (2*STEP if s>1 else 0)
def pick2(lens,cands,cps,slots,planned):
    p=min(cands,key=lambda s:(cost_old(lens,s,cps,slots,planned),s))
    if p>1 and bounded(lens,1,cps,slots,planned)<=bounded(lens,p,cps,slots,planned): p=1
    return p
tot=0;worst=0
for r in U:
    b=int(r['case'].split()[0][2:]); S=int(r['case'].split()[1][2:]); lens=[S]*b
    cps,slots=meta[r['case']]; P={int(k):v for k,v in r['splits'].items()}
    for planned in (False, True):
        cands=[s for s in P if s<=cap(lens,cps,slots,32 if planned else 4)]
        p=pick2(lens,cands,cps,slots,planned); best=min(P.values())
        print("uniform rule", r['case'], "planned" if planned else "even", p, f"{P[p]/best:.3f}")
tot=0
for r in R:
    lens=r['lens']; P={int(k):v for k,v in r['planned'].items()}
    cands=[s for s in P if s<=cap(lens,8,264,32)]
    p=pick2(lens,cands,8,264,True); best=min(P.values()); tot+=P[p]/best
    print("ragged rule", r['case'][:20], p, f"{P[p]/best:.3f}")
print(tot/len(R))
