// While the home is being provisioned or released, or a route is not live yet: ask the API
// each second (session cookie; GET needs no CSRF token) and reload once it has settled.
(() => {
  const card = document.getElementById("home");
  const busy = (status) => status === "provisioning" || status === "releasing";
  if (!busy(card.dataset.status) && !document.querySelector("#mappings [data-edge=pending]")) return;
  const url = `/api/homes/${card.dataset.slug}`;
  const get = (path) => fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  let polls = 0;
  const timer = setInterval(async () => {
    if (++polls > 300) { clearInterval(timer); return; }
    try {
      const home = await get(url);
      if (home.status === 404) { clearInterval(timer); location.reload(); return; }
      if (!home.ok) return;
      const status = (await home.json()).status;
      let pending = false;
      if (!busy(status)) {
        const mappings = await get(`${url}/proxy-mappings`);
        if (!mappings.ok) return;
        pending = (await mappings.json()).some((m) => m.edge === "pending");
      }
      if (status !== card.dataset.status || !(busy(status) || pending)) {
        clearInterval(timer);
        location.reload();
      }
    } catch (e) { /* the next poll tries again */ }
  }, 1000);
})();
