import { defineConfig } from 'vite';

// /external_api.js, the embedding API (src/embed/), built after the app
// into the same directory: one classic script whose global is the class
// (`ConclaveMeetExternalAPI`), loaded by other sites with a <script> tag.
// Not hashed: its address is what embedders write in their pages.
export default defineConfig({
  publicDir: false,
  build: {
    outDir: 'dist',
    emptyOutDir: false,
    sourcemap: false,
    // Other sites' visitors: older browsers than the app asks for.
    target: 'es2019',
    lib: {
      entry: 'src/embed/external_api.ts',
      formats: ['iife'],
      name: 'ConclaveMeetExternalAPI',
      fileName: () => 'external_api.js',
    },
    rolldownOptions: { output: { exports: 'default' } },
  },
});
