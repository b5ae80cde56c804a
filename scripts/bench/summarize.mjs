#!/usr/bin/env node
// Several full runs of `npm run bench` side by side: for each workload, ferry's median wall time in each run and
// its ratio to each peer in that run (ratios come from medians of the same run), then the median over the runs.
//
//   cp scripts/bench/last-run.json /tmp/run1.json   # after each `npm run bench`
//   node scripts/bench/summarize.mjs /tmp/run1.json /tmp/run2.json /tmp/run3.json
//
// Prints markdown: one table of ratios (ferry time ÷ peer time: below 1 means ferry is faster) and one of CPU.
import { readFileSync } from 'node:fs';

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node scripts/bench/summarize.mjs RUN.json [RUN.json ...]');
  process.exit(2);
}
const runs = files.map((f) => JSON.parse(readFileSync(f, 'utf8')));
const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  const n = s.length;
  return n ? (n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2) : NaN;
};
const fmt = (x, d = 2) => (Number.isFinite(x) ? (x < 1 && d === 2 ? x.toFixed(3) : x.toFixed(d)) : '—');
const ratioWords = (r) => (!Number.isFinite(r) ? '—' : r <= 1 ? `${(1 / r).toFixed(2)}x faster` : `${r.toFixed(2)}x slower`);

/** Median wall time (and CPU) of one peer in one run, counting verified runs only. */
function stats(run, workload, peer) {
  const row = run.results.find((r) => r.workload === workload && r.peer === peer);
  if (!row || row.runs.length === 0) return null;
  return {
    wall: median(row.runs.map((x) => x.wall)),
    cpu: median(row.runs.map((x) => x.cpu)),
    serverCpu: median(row.runs.map((x) => x.serverCpu)),
  };
}

const workloads = [...new Set(runs.flatMap((r) => r.results.map((x) => x.workload)))];
console.log(`Runs: ${runs.map((r) => `${r.started.slice(0, 16).replace('T', ' ')} UTC (load median ${fmt(median(r.loads))}, max ${fmt(Math.max(...r.loads))})`).join('; ')}.\n`);
console.log('| Workload | peer | ferry s, each run | peer s, each run | ferry ÷ peer, each run | median ratio |');
console.log('|---|---|---|---|---|---|');
for (const workload of workloads) {
  const peers = [...new Set(runs.flatMap((r) => r.results.filter((x) => x.workload === workload).map((x) => x.peer)))];
  const ferry = peers.find((p) => p.startsWith('ferry'));
  if (!ferry) continue;
  for (const peer of peers) {
    if (peer === ferry) continue;
    const per = runs.map((run) => ({ f: stats(run, workload, ferry), p: stats(run, workload, peer) }));
    const ratios = per.map(({ f, p }) => (f && p ? f.wall / p.wall : NaN));
    console.log(`| ${workload} | ${peer} | ${per.map(({ f }) => fmt(f?.wall)).join(' / ')} | ${per.map(({ p }) => fmt(p?.wall)).join(' / ')} | ${ratios.map((r) => fmt(r)).join(' / ')} | ${ratioWords(median(ratios))} |`);
  }
}
console.log('\n| Workload | peer | client CPU s (median of runs) | server CPU s | total |');
console.log('|---|---|---|---|---|');
for (const workload of workloads) {
  const peers = [...new Set(runs.flatMap((r) => r.results.filter((x) => x.workload === workload).map((x) => x.peer)))];
  for (const peer of peers) {
    const per = runs.map((run) => stats(run, workload, peer)).filter(Boolean);
    const c = median(per.map((s) => s.cpu));
    const sc = median(per.map((s) => s.serverCpu));
    console.log(`| ${workload} | ${peer} | ${fmt(c)} | ${fmt(sc)} | ${fmt(c + sc)} |`);
  }
}
const conc = runs.map((r) => r.concurrent).filter(Boolean);
if (conc.length) console.log(`\n50 clients: verified ${conc.map((c) => `${c.verified}/${c.clients}`).join(', ')}; wall ${conc.map((c) => fmt(c.wall)).join(' / ')} s; server peak ${conc.map((c) => (c.peak / 1e6).toFixed(0)).join(' / ')} MB.`);
const rss = runs.map((r) => r.rss ?? []);
if (rss.some((r) => r.length)) {
  console.log(`Server VmHWM receiving one file: ${rss.map((r) => r.map((x) => `${(x.size / 2 ** 30).toFixed(0)} GiB ${(x.hwm / 1e6).toFixed(0)} MB`).join(', ')).join(' | ')}.`);
}
