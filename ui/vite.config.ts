import { defineConfig } from "vite";
import { svelte } from "@sveltejs/vite-plugin-svelte";

// The window loads the built files from ui/dist through Tauri's asset protocol; `tauri dev`
// points it at this dev server instead.
export default defineConfig({
  plugins: [svelte()],
  clearScreen: false,
  server: { port: 5173, strictPort: true },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // WebKitGTK 2.40+ on the Linux targets we ship to.
    target: "safari16",
  },
});
