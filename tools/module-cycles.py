#!/usr/bin/env python3
"""Import cycles between the modules of each crate: `use crate::...`, `super::...` and
child-module paths, per source file. Prints each cycle; exits 1 if there is one."""
import re,os,sys,itertools
def modules(root):
    mods={}
    for dp,dn,fn in os.walk(root):
        for f in fn:
            if not f.endswith('.rs'): continue
            p=os.path.join(dp,f); rel=os.path.relpath(p,root)[:-3].split('/')
            if rel[-1]=='main' and os.path.exists(os.path.join(root,'lib.rs')): rel=['<bin>']
            elif rel[-1] in ('mod','lib','main'): rel=rel[:-1]
            elif len(rel)>1 and not os.path.exists(os.path.join(root,*rel[:-1],'mod.rs')) and not os.path.exists(os.path.join(root,*rel[:-2],rel[-2]+'.rs')):
                rel=rel[:-1]  # cfg-selected alternatives of one module (#[path])
            if rel and (rel[-1].endswith('_tests') or rel[-1]=='tests'): continue
            mods[tuple(rel)]=p
    return mods
def resolve(mods, path):
    # longest prefix that is a module
    for n in range(len(path),-1,-1):
        if tuple(path[:n]) in mods: return tuple(path[:n])
def edges(root):
    mods=modules(root); E={}
    for m,p in mods.items():
        s=open(p).read()
        s=re.sub(r'#\[cfg\(test\)\]\s*mod tests \{.*',' ',s,flags=re.S)
        s=re.sub(r'//.*','',s)
        tgts=set()
        # expand use groups roughly: crate::a::{b, c::d}
        for mm in re.finditer(r'\b(crate|super)((?:::[A-Za-z_][A-Za-z_0-9]*)*)(::\{([^}]*)\})?',s):
            if not mm.group(2) and not mm.group(3): continue
            base=list(m) if mm.group(1)=='super' else []
            if mm.group(1)=='super':
                # super of module file m
                base=list(m[:-1])
            parts=[x for x in mm.group(2).split('::') if x]
            paths=[base+parts]
            if mm.group(4):
                paths=[base+parts+[x.strip().split('::')[0]] for x in mm.group(4).split(',') if x.strip()]
            for pth in paths:
                r=resolve(mods,pth)
                if r is not None and r!=m and r!=tuple(m[:len(r)]) : tgts.add(r)
                elif r is not None and r!=m and len(r)<len(m):  # child using parent module items
                    tgts.add(r)
        for child in [k for k in mods if len(k)==len(m)+1 and k[:len(m)]==m]:
            if re.search(r'(?<![:\w])'+child[-1]+r'::', s): tgts.add(child)
        E[m]=tgts
    return E
def cycles(E):
    import sys
    sys.setrecursionlimit(10000)
    idx={};low={};st=[];on=set();res=[];c=[0]
    def sc(v):
        idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
        for w in E.get(v,()):
            if w not in idx: sc(w);low[v]=min(low[v],low[w])
            elif w in on: low[v]=min(low[v],idx[w])
        if low[v]==idx[v]:
            comp=[]
            while True:
                w=st.pop();on.discard(w);comp.append(w)
                if w==v:break
            if len(comp)>1: res.append(comp)
    for v in list(E): 
        if v not in idx: sc(v)
    return res
found=0
for root in sys.argv[1:]:
    E=edges(root)
    cs=cycles(E)
    found+=len(cs)
    print(root, 'modules',len(E),'cycles',len(cs))
    for comp in cs: print('  ', ['::'.join(x) or 'crate' for x in comp])
sys.exit(1 if found else 0)
