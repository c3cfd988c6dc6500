// No result yet, or a check is queued: follow /api/status (session cookie) and reload once
// the worker has stored a result.
(() => {
  let polls = 0;
  const timer = setInterval(async () => {
    if (++polls > 300) { clearInterval(timer); return; }
    try {
      const response = await fetch("/api/status", { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const data = await response.json();
      if (data.state !== "unknown" && !data.queued) { clearInterval(timer); location.reload(); }
    } catch (e) { return; }
  }, 1000);
})();
