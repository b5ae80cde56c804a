// The layers of ferry's source, checked on every CI run (npm run check:layers). One direction of dependency:
//   cli -> client | server | batch -> db -> protocol | transport | auth | storage | audit | plugin | tls -> fs -> core
// core (errors, Entry, paths, quoting, sizes, addresses) imports nothing of ours. Type-only imports count too,
// except where a rule says otherwise.
const OURS = '^(src|plugins)/';
const below = (name, from, allowed) => ({
  name,
  severity: 'error',
  comment: `${from} may import only ${allowed}`,
  from: { path: `^src/${from}/` },
  to: { path: OURS, pathNot: `^src/(${allowed})/` },
});

module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', comment: 'no import cycles', from: {}, to: { circular: true } },
    { name: 'resolvable', severity: 'error', comment: 'every import resolves', from: {}, to: { couldNotResolve: true } },
    below('core-imports-nothing-of-ours', 'core', 'core'),
    below('fs-is-low', 'fs', 'core|fs'),
    below('protocol-is-pure', 'protocol', 'core|protocol'),
    below('transport', 'transport', 'core|protocol|transport'),
    below('auth', 'auth', 'core|fs|auth'),
    below('audit', 'audit', 'core|fs|audit'),
    below('tls', 'tls', 'core|fs|tls'),
    // The storage may decode what the protocol defines as its own input (a bundle's records, protocol/bundle.ts):
    // the protocol's codec is pure (it imports only core), so this is no cycle and no socket.
    below('storage', 'storage', 'core|fs|protocol|storage'),
    below('plugin-layer', 'plugin', 'core|audit|auth|plugin'),
    // The page and its HTTPS side: the browser code (src/web/page) shares only pure modules (sizes, text, the audit
    // rendering); the server side knows nothing of sessions (the server hands it callbacks).
    below('web', 'web', 'core|audit|web'),
    // The shared database keeps what auth, audit and tls define (accounts, throttles, events, the identity).
    below('db', 'db', 'core|fs|auth|audit|tls|db'),
    {
      name: 'server-below-cli',
      severity: 'error',
      comment: 'the server knows nothing of the client, batch or the CLI',
      from: { path: '^src/server/' },
      to: { path: '^src/(cli|client|batch)/' },
    },
    {
      name: 'client-below-cli',
      severity: 'error',
      comment: 'the client library knows nothing of the server, its storage and accounts, batch or the CLI',
      from: { path: '^src/client/' },
      to: { path: '^src/(cli|server|batch|storage|auth)/' },
    },
    {
      name: 'batch-without-sockets',
      severity: 'error',
      comment: "batch gets its connections from the CLI: it does not import the client's socket modules (a host is parsed by core/address.ts)",
      from: { path: '^src/batch/' },
      to: { path: '^src/(cli|server|storage|transport)/|^src/client/(connection|client|mux|mod)\\.ts$', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'plugins-use-the-sdk',
      severity: 'error',
      comment: 'a bundled plugin imports only the plugin SDK (src/plugin/mod.ts) of ferry',
      from: { path: '^plugins/([^/]+)/' },
      to: { path: '^src/', pathNot: '^src/plugin/mod\\.ts$' },
    },
    {
      name: 'plugins-stay-out',
      severity: 'error',
      comment: 'only the CLI wiring (src/cli/bundled-plugins.ts) knows the bundled plugins',
      from: { path: '^src/', pathNot: '^src/cli/bundled-plugins\\.ts$' },
      to: { path: '^plugins/' },
    },
    {
      name: 'one-plugin-not-another',
      severity: 'error',
      comment: 'a bundled plugin does not import another',
      from: { path: '^plugins/([^/]+)/' },
      to: { path: '^plugins/', pathNot: '^plugins/$1/' },
    },
    { name: 'no-tests-in-source', severity: 'error', from: { path: OURS }, to: { path: '^test/' } },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    // ESM conditions, as Node and Deno resolve our imports (cac has only an ESM entry).
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.mjs', '.cjs'], exportsFields: ['exports'], conditionNames: ['import', 'node', 'default'] },
  },
};
