// Loaded into a proxy process under test (`node --import`): on SIGUSR2 the process fails the way
// a bug in it would, by an exception nobody catches or (C2S_TEST_CRASH=rejection) a promise
// rejection nobody handles. Nothing in the proxy knows about it.
process.on("SIGUSR2", () => {
  setImmediate(() => {
    if (process.env.C2S_TEST_CRASH === "rejection")
      void Promise.reject(new Error("test: an unhandled rejection"));
    else throw new Error("test: an uncaught exception");
  });
});
