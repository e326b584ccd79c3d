#!/usr/bin/env python3
"""Import graph of a crate's modules (one node per file), from `crate::`, `super::` and `self::`
paths in its source (use items and inline paths); prints every cycle (strongly connected
component) at file level and at top-level-module level."""
import os,re,sys
root=sys.argv[1] if len(sys.argv)>1 else 'controller/src'
mods={}
for dp,_,fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs'): continue
        p=os.path.join(dp,f); rel=os.path.relpath(p,root)[:-3].split(os.sep)
        if rel[-1] in ('lib','main'): rel=rel[:-1]
        elif rel[-1]=='mod': rel=rel[:-1]
        mods[tuple(rel)]=p
def resolve(path):
    # longest prefix that is a module
    for n in range(len(path),-1,-1):
        if tuple(path[:n]) in mods: return tuple(path[:n])
    return ()
edges={m:set() for m in mods}
for m,p in mods.items():
    src=open(p).read()
    # drop test modules (cfg(test)) roughly: cut at '#[cfg(test)]\nmod tests'
    i=src.find('#[cfg(test)]\nmod tests'); 
    if i>=0: src=src[:i]
    src=re.sub(r'//.*','',src)
    base=list(m) if not p.endswith(('mod.rs','lib.rs','main.rs')) else list(m)
    # file module m: super:: refers to parent of m (for a mod.rs, m itself is dir)
    for mm in re.finditer(r'\b((?:crate|super|self)(?:::\w+)+)',src):
        segs=mm.group(1).split('::')
        if segs[0]=='crate': path=segs[1:]
        else:
            cur=list(m)
            while segs and segs[0] in ('super','self'):
                if segs[0]=='super': cur=cur[:-1]
                segs=segs[1:]
            path=cur+segs
        # braces in use lists: handle `use crate::a::{b, c}` roughly
        t=resolve(path)
        if t and t!=m and not (len(t)<len(m) and m[:len(t)]==t): edges[m].add(t)
    for mm in re.finditer(r'\b(?:crate|super)((?:::\w+)*)::\{([^}]*)\}',src):
        pass
# SCC (Tarjan)
def sccs(nodes,edges):
    idx={};low={};st=[];on=set();res=[];c=[0]
    sys.setrecursionlimit(10000)
    def f(v):
        idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
        for w in edges.get(v,()):
            if w not in idx: f(w);low[v]=min(low[v],low[w])
            elif w in on: low[v]=min(low[v],idx[w])
        if low[v]==idx[v]:
            comp=[]
            while True:
                w=st.pop();on.discard(w);comp.append(w)
                if w==v: break
            if len(comp)>1: res.append(comp)
    for v in nodes:
        if v not in idx: f(v)
    return res
n=0
for comp in sccs(list(mods),edges):
    n+=1; print('file-level cycle:', ' '.join('::'.join(c) or 'crate' for c in comp))
top={}
for a,bs in edges.items():
    for b in bs:
        if a and b and a[0]!=b[0]: top.setdefault(a[0],set()).add(b[0])
for comp in sccs(list(top),top):
    n+=1; print('top-level cycle:', ' '.join(comp))
print(f'{len(mods)} modules, {sum(len(v) for v in edges.values())} edges, {n} cycles')
