// ReDoc with the settings the page carries as JSON (no inline script: the pages' CSP forbids it).
const redocSettings = JSON.parse(document.getElementById("redoc-settings").textContent);
const redocElement = document.getElementById("redoc-ui");
Redoc.init(redocElement.dataset.openapiUrl, redocSettings, redocElement);
