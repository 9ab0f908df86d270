// Dependencies point one way (STYLE.md "Layout"): kernel <- wire <- transport <- plane <- caller, worker,
// discovery, events <- component <- runtime. Type-only imports may point back (a plane names the
// types of the services it holds); value imports may not, and no value import cycle may exist.
const SRC = '^packages/runtime/src/';
const layer = (name, folders) => ({ name, path: `${SRC}(${folders.join('|')})` });
const KERNEL = ['errors\\.ts', 'clock\\.ts', 'names\\.ts', 'ids\\.ts', 'logger\\.ts'];
const layers = [
  layer('kernel', KERNEL),
  layer('wire', ['wire/', 'codec/']),
  layer('transport', ['transport/']),
  layer('plane', ['plane/']),
  layer('services', ['caller/', 'worker/', 'discovery/', 'events/']),
  layer('component', ['component/']),
];
// Each layer may not value-import any layer above it.
const backwards = layers.flatMap((from, i) =>
  layers.slice(i + 1).map((to) => ({
    name: `no-${from.name}-to-${to.name}`,
    comment: `${from.name} sits below ${to.name}: it must not import it (type-only imports excepted)`,
    severity: 'error',
    from: { path: from.path, pathNot: '\\.test\\.ts$' },
    to: { path: to.path, dependencyTypesNot: ['type-only'] },
  })),
);

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'A value-import cycle: break it (type-only back-edges are allowed).',
      severity: 'error',
      from: {},
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
    ...backwards,
    {
      name: 'only-nats-transport-imports-nats',
      comment: 'Only transport/nats talks to nats.js; everything else goes through the Transport seam.',
      severity: 'error',
      from: { path: `${SRC}`, pathNot: `${SRC}transport/nats/` },
      to: { path: 'node_modules/(\\.pnpm/)?.*nats[@/]', pathNot: 'msgpack' },
    },
    {
      name: 'only-the-composition-root-builds-transports',
      comment: 'The core receives a transport; connect.ts (and the doors that re-export) choose and build one.',
      severity: 'error',
      from: { path: SRC, pathNot: `${SRC}(connect|index|internal)\\.ts$|${SRC}transport/` },
      to: { path: `${SRC}transport/(nats|memory)/`, dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'runtime-has-no-dependency-on-testing',
      severity: 'error',
      from: { path: SRC },
      to: { path: '^packages/testing/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)dist(-test)?/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'packages/runtime/tsconfig.test.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['types', 'import', 'require', 'default'] },
  },
};
