// While the certificate job or a tunnel is in flight: refresh the job from the API each
// second (session cookie; GET needs no CSRF token), reload the page once something settles.
(() => {
  const url = document.currentScript.dataset.url;
  const shown = document.currentScript.dataset.jobState;
  const table = document.getElementById("entries-table");
  const signature = table ? table.dataset.signature : "";
  let polls = 0;
  const timer = setInterval(async () => {
    if (++polls > 900) { clearInterval(timer); return; }
    let data;
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) return;
      data = await response.json();
    } catch (e) { return; }
    const job = data.job;
    const badge = document.getElementById("job-state");
    badge.textContent = job.state;
    badge.className = "badge " + job.state;
    document.getElementById("job-step").textContent = job.step || "—";
    document.getElementById("job-updated").textContent = new Date(job.updated).toLocaleTimeString();
    document.getElementById("job-steps").replaceChildren(...job.steps.map((s) => {
      const li = document.createElement("li");
      li.className = s.status;
      li.textContent = s.name;
      return li;
    }));
    const error = document.getElementById("job-error");
    error.textContent = job.error;
    error.hidden = !job.error;
    const now = data.entries.map((e) => `${e.id}:${e.tunnel.state}:${e.tunnel.pid ?? ""}`).join(",");
    // Waiting for the TXT record is the user's turn: show the record once the job gets there,
    // and the steps again once the cloud has seen it.
    const waits = (state) => state === "waiting";
    const busy = job.state === "pending" || job.state === "running" || waits(job.state) || data.entries.some((e) => e.tunnel.state === "opening");
    if (waits(job.state) !== waits(shown)) { clearInterval(timer); location.reload(); return; }
    if (!busy || now !== signature) { clearInterval(timer); location.reload(); }
  }, 1000);
})();
