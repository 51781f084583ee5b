import { defineConfig } from 'vitest/config';

// The server embeds dist/ and answers every /<room> path with index.html,
// so assets are addressed from the root (/assets/...), never relatively.
export default defineConfig({
  base: '/',
  // Preact's automatic JSX runtime, without a plugin.
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  resolve: {
    // Only used by DNS resolution, which a ws(s):// service never reaches.
    alias: { 'node:dns': '/src/shims/empty.ts' },
  },
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    emptyOutDir: true,
    sourcemap: false,
    target: 'es2022',
    // One page, one script: nothing to split.
    chunkSizeWarningLimit: 600,
  },
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
  },
});
