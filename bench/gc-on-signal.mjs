// Preload for bench/chat-idle.ts (NODE_OPTIONS="--expose-gc --import <this file>"): a full GC on
// SIGUSR2, so resident memory can be read after garbage is collected. Plain JS: it loads before tsx.
process.on("SIGUSR2", () => {
  if (typeof globalThis.gc === "function") globalThis.gc();
});
