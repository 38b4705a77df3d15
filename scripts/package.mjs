#!/usr/bin/env node
// `npm run package`: builds pkg/portd_<version>_<arch>.deb with Debian's own tools (dpkg-deb, lintian).
//
// The tree is staged in pkg/root/ exactly as installed, then `dpkg-deb --root-owner-group --build`:
//   /usr/bin/portd                 sh wrapper: node + the flags in node-options + bin/portd.js
//   /usr/lib/portd/                package.json, bin/portd.js, node-options, dist/ (tsc output, no maps),
//                                  node_modules/ (production dependencies only, stripped, native parts
//                                  built here for this machine's architecture and Node ABI)
//   /lib/systemd/system/portd.service, /etc/portd/portd.yaml (conffile), /usr/share/doc/portd, man page
// Needs a checkout after `npm ci` (typescript, and the dependency tree to copy from), dpkg-deb, g++, make,
// python3 and the Node headers (/usr/include/node) for better-sqlite3. No network.
//
// Options: --no-lint (skip lintian), --no-cache (rebuild better-sqlite3 even if pkg/cache has it).
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  rmdirSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(REPO, 'pkg');
const ROOT = join(OUT, 'root');
const WORK = join(OUT, 'work');
const CACHE = join(OUT, 'cache');
const LIB = join(ROOT, 'usr/lib/portd');
const TEMPLATES = join(REPO, 'packaging');
const args = new Set(process.argv.slice(2));

const say = (m) => process.stderr.write(`package: ${m}\n`);
const run = (cmd, argv, opts = {}) => execFileSync(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'], ...opts });
const die = (m) => {
  say(`error: ${m}`);
  process.exit(1);
};

const pkgJson = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8'));
const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8'));
const version = pkgJson.version;
const arch = run('dpkg', ['--print-architecture']).toString().trim();
// Debian architecture → Node's process.arch: native parts are built on (and for) this machine
const NODE_ARCH = { amd64: 'x64', arm64: 'arm64', armhf: 'arm', i386: 'ia32', riscv64: 'riscv64' };
if (NODE_ARCH[arch] !== process.arch) die(`dpkg architecture ${arch} is not this node's (${process.arch})`);
const nodeMajor = Number(process.versions.node.split('.')[0]);
// reproducible timestamps (dpkg-deb reads it too): the last commit, or now outside git
const epoch = (() => {
  const r = spawnSync('git', ['-C', REPO, 'log', '-1', '--format=%ct'], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() ? Number(r.stdout.trim()) : Math.floor(Date.now() / 1000);
})();

for (const tool of ['dpkg-deb', 'g++', 'make', 'python3', 'strip', 'objdump']) {
  if (spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status !== 0)
    die(`${tool} not found (apt-get install dpkg-dev g++ make python3 binutils)`);
}
const nodeModules = join(REPO, 'node_modules');
if (!existsSync(join(nodeModules, 'typescript')) || !existsSync(join(nodeModules, 'better-sqlite3')))
  die('run `npm ci` first: the build needs typescript and the installed dependency tree');

const t0 = performance.now();
rmSync(ROOT, { recursive: true, force: true });
rmSync(WORK, { recursive: true, force: true });
for (const f of existsSync(OUT) ? readdirSync(OUT) : []) if (f.endsWith('.deb')) rmSync(join(OUT, f));
mkdirSync(LIB, { recursive: true });
mkdirSync(WORK, { recursive: true });

// 1. compiled JavaScript: tsc straight into the staged tree, without source maps (a stack trace names
// dist/ lines, which match the shipped files; maps would double the tree for a debugger nobody attaches)
say('tsc → usr/lib/portd/dist');
run(process.execPath, [
  join(nodeModules, 'typescript/bin/tsc'),
  '-p',
  join(REPO, 'tsconfig.build.json'),
  '--outDir',
  join(LIB, 'dist'),
  '--sourceMap',
  'false',
  '--declaration',
  'false',
]);
mkdirSync(join(LIB, 'bin'));
// /usr/bin/portd runs it with node: no #! line (lintian: a script must be executable, and it need not be)
writeFileSync(join(LIB, 'bin/portd.js'), readFileSync(join(REPO, 'bin/portd.js'), 'utf8').replace(/^#!.*\n/, ''));
copyFileSync(join(REPO, 'config/node-options'), join(LIB, 'node-options'));
// what node needs of package.json ("type": "module") and what an admin may look for; no scripts, no devDependencies
writeFileSync(
  join(LIB, 'package.json'),
  `${JSON.stringify(
    {
      name: pkgJson.name,
      version,
      description: pkgJson.description,
      type: 'module',
      license: pkgJson.license,
      private: true,
      dependencies: pkgJson.dependencies,
    },
    null,
    2,
  )}\n`,
);

// 2. production dependencies: what the runtime reaches from package.json's dependencies, resolved the way
// node does (nearest node_modules up the tree) through the lockfile. Not followed: devDependencies, and
// better-sqlite3's prebuild-install (its install script's downloader, with 12 packages of its own).
// Optional packages for other platforms (koffi's other prebuilt binaries) are not installed, so not copied.
say('production dependencies → usr/lib/portd/node_modules');
const INSTALL_TIME_ONLY = new Set(['prebuild-install']);
const resolveIn = (from, name) => {
  for (let dir = from; ; dir = dir.slice(0, Math.max(0, dir.lastIndexOf('/node_modules/')))) {
    const key = `${dir ? `${dir}/` : ''}node_modules/${name}`;
    if (lock.packages[key]) return key;
    if (!dir) return null;
  }
};
const reached = new Set();
const queue = Object.keys(pkgJson.dependencies).map((n) => resolveIn('', n));
while (queue.length > 0) {
  const key = queue.pop();
  if (!key || reached.has(key)) continue;
  reached.add(key);
  const meta = lock.packages[key];
  for (const n of [...Object.keys(meta.dependencies ?? {}), ...Object.keys(meta.optionalDependencies ?? {})]) {
    if (!INSTALL_TIME_ONLY.has(n)) queue.push(resolveIn(key, n));
  }
}
const modules = [];
for (const key of [...reached].sort()) {
  const meta = lock.packages[key];
  const from = join(REPO, key);
  if (!existsSync(from)) {
    if (meta.optional) continue;
    die(`${key} is a production dependency but not installed: run npm ci`);
  }
  const real = realpathSync(from);
  // each entry copies its own files; nested node_modules are entries of their own
  cpSync(real, join(LIB, key), {
    recursive: true,
    dereference: true,
    filter: (src) => relative(real, src).split('/')[0] !== 'node_modules',
  });
  modules.push({ key, name: key.slice(key.lastIndexOf('node_modules/') + 13), license: meta.license ?? 'unknown' });
}

// 3. better-sqlite3 (V8 ABI, not N-API): compiled here by node-gyp against this Node's headers. Built in
// pkg/work from the installed copy (GitHub prebuilds are not used); cached by version, Node ABI and arch
const bsq = join(LIB, 'node_modules/better-sqlite3');
const bsqVersion = JSON.parse(readFileSync(join(bsq, 'package.json'), 'utf8')).version;
const cached = join(CACHE, `better_sqlite3-${bsqVersion}-abi${process.versions.modules}-${arch}.node`);
if (args.has('--no-cache') || !existsSync(cached)) {
  say(`node-gyp: better-sqlite3 ${bsqVersion} for node ${process.version} ${arch} (takes a minute or two)`);
  const src = join(WORK, 'better-sqlite3');
  cpSync(bsq, src, { recursive: true, filter: (p) => relative(bsq, p) !== 'build' });
  // npm's own node-gyp (NodeSource's nodejs bundles npm); else a node-gyp on PATH (Debian's node-gyp package)
  const gyp = (() => {
    try {
      return [
        createRequire(join(dirname(process.execPath), '../lib/node_modules/npm/package.json')).resolve(
          'node-gyp/bin/node-gyp.js',
        ),
      ];
    } catch {
      return [];
    }
  })();
  const nodedir = existsSync('/usr/include/node/node.h') ? ['--nodedir=/usr'] : [];
  // its output (compiler warnings of the SQLite amalgamation) only when it fails
  const r = spawnSync(
    gyp.length > 0 ? process.execPath : 'node-gyp',
    [...gyp, 'rebuild', '--release', '--loglevel=warn', '-j', '2', ...nodedir],
    {
      cwd: src,
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    },
  );
  if (r.status !== 0) {
    process.stderr.write(`${r.stdout}${r.stderr}`.slice(-20_000));
    die('node-gyp could not build better-sqlite3 (see above; it needs g++, make, python3 and the Node headers)');
  }
  mkdirSync(CACHE, { recursive: true });
  copyFileSync(join(src, 'build/Release/better_sqlite3.node'), cached);
} else say(`better-sqlite3: ${relative(REPO, cached)} (cached; --no-cache rebuilds)`);
rmSync(join(bsq, 'build'), { recursive: true, force: true });
mkdirSync(join(bsq, 'build/Release'), { recursive: true });
copyFileSync(cached, join(bsq, 'build/Release/better_sqlite3.node'));
// the SQLite amalgamation and the addon's C++ are build inputs only
for (const d of ['deps', 'src', 'binding.gyp']) rmSync(join(bsq, d), { recursive: true, force: true });

// 4. koffi (N-API): keep the prebuilt binary for this libc (Debian: glibc) and drop the musl one,
// the C++ sources, the headers and the install-time builder
const koffiBin = join(LIB, `node_modules/@koromix/koffi-linux-${process.arch}`);
if (!existsSync(koffiBin)) die(`koffi has no prebuilt binary for linux-${process.arch} installed`);
for (const f of readdirSync(koffiBin)) if (f.startsWith('musl_')) rmSync(join(koffiBin, f), { recursive: true });
for (const d of ['vendor', 'lib', 'doc', 'cnoke.cjs'])
  rmSync(join(LIB, 'node_modules/koffi', d), { recursive: true, force: true });

// 5. strip what is not needed at run time: docs, type declarations, maps, tests, C/C++ sources, dotfiles
// (the lists are kept as words so that the one pattern they build stays within the line bound)
const DROP_EXTENSIONS =
  'md markdown ts mts cts map tsbuildinfo c cc cpp cxx h hh hpp inc def gyp gypi mk o a s asm ' +
  'yml yaml flow coffee html sh';
const DROP_NAMES = 'readme changelog history authors contributing code_of_conduct security makefile cmakelists\\.txt';
const DROP_FILE = new RegExp(
  `(\\.(${DROP_EXTENSIONS.split(' ').join('|')})$)|` +
    `^(${DROP_NAMES.split(' ').join('|')}|tsconfig.*\\.json|\\.[^/]+)(\\.[a-z]+)?$`,
  'i',
);
const DROP_DIR = /^(test|tests|__tests__|docs?|examples?|benchmarks?|bench|coverage|integration|\..+)$/i;
const KEEP_FILE = /^(licen[cs]e|copying|notice)/i;
let dropped = 0;
// directories by name only at a module's top level: yaml/dist/doc/ is code
const moduleRoots = new Set(modules.map((m) => join(LIB, m.key)));
const strip = (dir) => {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = lstatSync(p);
    if (st.isDirectory()) {
      if (moduleRoots.has(dir) && DROP_DIR.test(name)) {
        rmSync(p, { recursive: true });
        dropped++;
        continue;
      }
      strip(p);
      if (readdirSync(p).length === 0) rmdirSync(p);
    } else if (!KEEP_FILE.test(name) && DROP_FILE.test(name)) {
      rmSync(p);
      dropped++;
    }
  }
};
// node loads typebox through its "import" condition (build/esm) and yaml through "node" (dist/): the
// CommonJS and browser copies are never read (portd imports typebox only from ESM, nothing requires it)
for (const d of ['@sinclair/typebox/build/cjs', 'yaml/browser'])
  rmSync(join(LIB, 'node_modules', d), { recursive: true });
// command-line entry points of dependencies ("bin" in their package.json): portd never runs them
for (const m of modules) {
  const dir = join(LIB, m.key);
  const bin = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).bin;
  for (const f of typeof bin === 'string' ? [bin] : Object.values(bin ?? {})) rmSync(join(dir, f), { force: true });
}
strip(join(LIB, 'node_modules'));
// package.json "bin" links are npm's business; the tree is never npm-installed again
rmSync(join(LIB, 'node_modules/.bin'), { recursive: true, force: true });
rmSync(join(LIB, 'node_modules/.package-lock.json'), { force: true });
// native objects without their symbol tables (Debian policy 10.1); the running code is the same
const natives = [];
const findNatives = (dir) => {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (lstatSync(p).isDirectory()) findNatives(p);
    else if (name.endsWith('.node')) natives.push(p);
  }
};
findNatives(join(LIB, 'node_modules'));
for (const n of natives) run('strip', ['--strip-unneeded', '--remove-section=.comment', '--remove-section=.note', n]);

// 6. the rest of the installed tree
const put = (rel, text, mode = 0o644) => {
  const p = join(ROOT, rel);
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, text);
  chmodSync(p, mode);
};
put('usr/bin/portd', readFileSync(join(TEMPLATES, 'portd.sh')), 0o755);
put('lib/systemd/system/portd.service', readFileSync(join(REPO, 'config/portd.service')));
put('etc/portd/portd.yaml', readFileSync(join(REPO, 'config/router.example.yaml')));
const doc = 'usr/share/doc/portd';
put(`${doc}/README.md`, readFileSync(join(REPO, 'README.md')));
for (const f of readdirSync(join(REPO, 'docs'))) {
  if (f.endsWith('.md') || f.endsWith('.png')) put(`${doc}/${f}`, readFileSync(join(REPO, 'docs', f)));
}
put(`${doc}/copyright`, copyright(modules));
const date = new Date(epoch * 1000).toUTCString().replace('GMT', '+0000');
// a native package (no Debian revision in the version): changelog.gz, not changelog.Debian.gz (lintian)
put(
  `${doc}/changelog.gz`,
  gzipSync(
    `portd (${version}) unstable; urgency=medium\n\n  * Release ${version}, built by scripts/package.mjs from the ` +
      `portd repository.\n\n -- ${maintainer()}  ${date}\n`,
    { level: 9 },
  ),
);
put(
  'usr/share/man/man8/portd.8.gz',
  gzipSync(readFileSync(join(TEMPLATES, 'portd.8'), 'utf8').replaceAll('@VERSION@', version), { level: 9 }),
);
put('usr/share/lintian/overrides/portd', readFileSync(join(TEMPLATES, 'debian/lintian-overrides')));

// 7. control files
const installedKiB = duKiB(ROOT);
const DEBIAN = join(ROOT, 'DEBIAN');
mkdirSync(DEBIAN);
const depends = [
  // better-sqlite3 is compiled for this Node major's ABI: a newer major would refuse to load it
  `nodejs (>= ${Math.max(20, nodeMajor)})`,
  `nodejs (<< ${nodeMajor + 1})`,
  'nftables',
  'conntrack',
  'iproute2',
  'adduser',
  // the two native addons link libc, libstdc++ and libgcc_s: libc at the newest symbol version they use
  `libc6 (>= ${glibcNeeded(natives)})`,
  'libstdc++6',
  'libgcc-s1',
];
put(
  'DEBIAN/control',
  `${[
    'Package: portd',
    `Version: ${version}`,
    `Architecture: ${arch}`,
    `Maintainer: ${maintainer()}`,
    `Installed-Size: ${installedKiB}`,
    `Depends: ${depends.join(', ')}`,
    'Section: net',
    'Priority: optional',
    'Description: gateway daemon for UPnP IGD, PCP, NAT-PMP, port triggers and forwards',
    ' portd runs on a Linux gateway and answers every way a LAN device asks for an',
    ' inbound port: UPnP IGD, PCP (RFC 6887), NAT-PMP (RFC 6886), port triggers and',
    ' static forwards. All of them are leases in one table (SQLite) that drives the',
    " gateway's nftables: every opening has an owner, a reason and an expiry, and an",
    ' admin can see and revoke each one.',
    ' .',
    ' The service runs as the unprivileged user portd with CAP_NET_ADMIN only. It is',
    ' not enabled on install: edit /etc/portd/portd.yaml, then',
    ' systemctl enable --now portd.',
  ].join('\n')}\n`,
);
put('DEBIAN/conffiles', readFileSync(join(TEMPLATES, 'debian/conffiles')));
for (const s of ['postinst', 'prerm', 'postrm']) put(`DEBIAN/${s}`, readFileSync(join(TEMPLATES, 'debian', s)), 0o755);
put('DEBIAN/md5sums', md5sums());

// modes and times: files 0644 (scripts 0755 as set above), directories 0755, times from the last commit
normalize(ROOT);

// 8. the package
const deb = join(OUT, `portd_${version}_${arch}.deb`);
run('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', ROOT, deb], {
  env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch) },
  stdio: ['ignore', 'ignore', 'inherit'],
});
const debKiB = Math.round(statSync(deb).size / 1024);
say(
  `${relative(REPO, deb)}: ${debKiB} KiB, installed ${installedKiB} KiB (node_modules ` +
    `${duKiB(join(LIB, 'node_modules'))} KiB, ` +
    `dist ${duKiB(join(LIB, 'dist'))} KiB), ${modules.length} modules, ${dropped} files/dirs stripped, ` +
    `${((performance.now() - t0) / 1000).toFixed(1)} s`,
);

if (!args.has('--no-lint')) {
  if (spawnSync('sh', ['-c', 'command -v lintian'], { stdio: 'ignore' }).status !== 0) {
    say('lintian not installed (apt-get install lintian; npm test installs it): not checked');
  } else {
    const r = spawnSync('lintian', ['--fail-on', 'error', '--tag-display-limit', '0', deb], { encoding: 'utf8' });
    process.stderr.write(r.stdout + r.stderr);
    if (r.status !== 0) die('lintian reported errors');
    say('lintian: no errors');
  }
}
process.stdout.write(`${deb}\n`);

/** the newest GLIBC_x.y symbol version the native objects import (what dpkg-shlibdeps would find) */
function glibcNeeded(files) {
  let best = [2, 17];
  for (const f of files) {
    for (const m of run('objdump', ['-T', f])
      .toString()
      .matchAll(/\bGLIBC_(\d+)\.(\d+)\b/g)) {
      const v = [Number(m[1]), Number(m[2])];
      if (v[0] > best[0] || (v[0] === best[0] && v[1] > best[1])) best = v;
    }
  }
  return best.join('.');
}

function maintainer() {
  return process.env.DEBFULLNAME && process.env.DEBEMAIL
    ? `${process.env.DEBFULLNAME} <${process.env.DEBEMAIL}>`
    : 'portd maintainers <portd@example.org>';
}

function duKiB(dir) {
  // Installed-Size as dpkg-gencontrol counts it: 1 KiB per file at least
  let kib = 0;
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = lstatSync(p);
      if (st.isDirectory()) {
        kib += 1;
        walk(p);
      } else kib += Math.max(1, Math.ceil(st.size / 1024));
    }
  };
  walk(dir);
  return kib;
}

function md5sums() {
  const lines = [];
  const walk = (d) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const rel = relative(ROOT, p);
      if (rel === 'DEBIAN' || rel.startsWith('etc/')) continue; // conffiles are tracked by dpkg itself
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) lines.push(`${createHash('md5').update(readFileSync(p)).digest('hex')}  ${rel}`);
    }
  };
  walk(ROOT);
  return `${lines.join('\n')}\n`;
}

function normalize(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = lstatSync(p);
    if (st.isDirectory()) {
      chmodSync(p, 0o755);
      normalize(p);
    } else if (st.isFile()) {
      const keepExec = p === join(ROOT, 'usr/bin/portd') || dirname(p) === join(ROOT, 'DEBIAN');
      // a module file that starts with #! is also meant to be run (koffi's trampolines.cjs): executable
      const script = p.startsWith(join(LIB, 'node_modules')) && readFileSync(p).subarray(0, 2).toString() === '#!';
      chmodSync(p, (keepExec && st.mode & 0o100) || script ? 0o755 : 0o644);
    }
    utimesSync(p, epoch, epoch);
  }
}

function copyright(mods) {
  const byLicense = new Map();
  for (const m of mods) byLicense.set(m.license, [...(byLicense.get(m.license) ?? []), m.name]);
  const stanzas = [
    'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/',
    'Upstream-Name: portd',
    '',
    'Files: *',
    `Copyright: ${new Date(epoch * 1000).getUTCFullYear()} the portd authors`,
    `License: ${pkgJson.license}`,
    '',
  ];
  for (const [license, names] of [...byLicense].sort()) {
    stanzas.push(
      `Files: ${names
        .sort()
        .map((n) => `usr/lib/portd/node_modules/${n}/*`)
        .join('\n ')}`,
      'Copyright: the authors of each module, named in its package.json and license file',
      `License: ${license}`,
      ' The license text is the file LICENSE (or similar) in each module directory,',
      ' kept there on purpose.',
      '',
    );
  }
  stanzas.push(
    'License: MIT',
    ' Permission is hereby granted, free of charge, to any person obtaining a copy of',
    ' this software and associated documentation files (the "Software"), to deal in',
    ' the Software without restriction, including without limitation the rights to',
    ' use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of',
    ' the Software, and to permit persons to whom the Software is furnished to do so,',
    ' subject to the following conditions:',
    ' .',
    ' The above copyright notice and this permission notice shall be included in all',
    ' copies or substantial portions of the Software.',
    ' .',
    ' THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR',
    ' IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS',
    ' FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR',
    ' COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN',
    ' AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION',
    ' WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.',
    '',
    'License: Apache-2.0',
    ' On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.',
  );
  return `${stanzas.join('\n')}\n`;
}
