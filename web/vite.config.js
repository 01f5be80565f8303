import { defineConfig } from "vite";
import preact from "@preact/preset-vite";

// The daemon serves the result from the oore package (oore/web/dist): index.html plus
// content-hashed assets, no source maps, no inline script or style (the CSP forbids them).
export default defineConfig({
  plugins: [preact()],
  base: "/",
  build: {
    outDir: "../oore/web/dist",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    cssCodeSplit: false,
    reportCompressedSize: false,
  },
  server: { proxy: { "/v1": "http://127.0.0.1:8787" } },
});
