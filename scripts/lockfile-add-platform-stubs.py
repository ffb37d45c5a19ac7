#!/usr/bin/env python3
# npm ci needs a lock entry for every optional platform package (biome, swc, ...), but the registry
# mirror on our machines serves only the linux-x64 ones, so `npm install` leaves the others out and
# `npm ci` then refuses the lock. This adds version + os/cpu stubs for the missing ones (npm skips them
# on other platforms without fetching). Run it after every `npm install` that rewrites the lock:
#   python3 scripts/lockfile-add-platform-stubs.py package-lock.json
import json, sys, re
f = sys.argv[1]
lock = json.load(open(f))
pk = lock['packages']
added = 0
for path, e in list(pk.items()):
    for name, spec in (e.get('optionalDependencies') or {}).items():
        nested = (path + '/node_modules/' + name) if path else 'node_modules/' + name
        top = 'node_modules/' + name
        if nested in pk or top in pk: continue
        base = name.split('/')[-1]
        os_ = next((o for o in ['android', 'darwin', 'win32', 'freebsd', 'openharmony', 'linux'] if f'-{o}-' in f'-{base}-'), None)
        cpu = next((c for c in ['arm64', 'x64', 'ia32', 'ppc64', 's390x', 'loong64', 'riscv64', 'arm'] if re.search(rf'-{c}(-|$)', base)), None)
        if not os_ or not cpu:
            print('cannot place', name); continue
        entry = {'version': re.sub(r'^[\^~=]', '', spec), 'optional': True}
        if e.get('dev'): entry['dev'] = True
        entry['os'] = [os_]; entry['cpu'] = [cpu]
        if 'musl' in base: entry['libc'] = ['musl']
        elif 'gnu' in base and os_ == 'linux': entry['libc'] = ['glibc']
        pk[top] = entry; added += 1
root = pk.pop('')
lock['packages'] = {'': root, **dict(sorted(pk.items()))}
with open(f, 'w') as out:
    json.dump(lock, out, indent=2); out.write('\n')
print('added', added)
