#!/usr/bin/env python3
"""Compares two directories written by scripts/sim-results.sh (a bench and a sweep against
benchctl sim with a fixed seed): every key of the bench result, of each sweep entry, of the
summary and the plan, and the file list, with their values (floats and timing fields aside).
Usage: compare-results.py BEFORE_DIR AFTER_DIR"""
import json,glob,sys
b,a=sys.argv[1],sys.argv[2]
def load(d):
    bench=json.load(open(f'{d}/bench.json'))
    sw=sorted(glob.glob(f'{d}/sweep/*/'))[0]
    arr=json.load(open(glob.glob(sw+'*_vllm_result.json')[0]))
    summ=json.load(open(sw+'summary.json'))
    plan=json.load(open(sw+'benchctl_sweep.json'))
    files=sorted(p[len(sw):] for p in glob.glob(sw+'**',recursive=True))
    return bench,arr,summ,plan,files
def timing(k,v):
    return isinstance(v,float) or k in ('date','duration','load_workers') or 'unix' in k or k=='gpu_telemetry'
def cmp(name,x,y,path=''):
    n=0
    if isinstance(x,dict) and isinstance(y,dict):
        for k in sorted(set(x)|set(y)):
            if k not in y: print(f'{name}{path}: key {k} only before'); n+=1
            elif k not in x: print(f'{name}{path}: key {k} only after'); n+=1
            elif not timing(k,x[k]): n+=cmp(name,x[k],y[k],path+'.'+k)
    elif isinstance(x,list) and isinstance(y,list) and len(x)==len(y):
        for i,(p,q) in enumerate(zip(x,y)): n+=cmp(name,p,q,f'{path}[{i}]')
    elif x!=y and not (isinstance(x,float) or isinstance(y,float)):
        print(f'{name}{path}: {x!r} != {y!r}'); n+=1
    return n
B=load(b); A=load(a)
n=0
for name,x,y in zip(['bench','entries','summary','plan','files'],B,A): n+=cmp(name,x,y)
print('differences:',n)
