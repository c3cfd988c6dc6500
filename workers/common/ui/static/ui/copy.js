// Buttons with data-copy put that text on the clipboard (no inline script: the pages' CSP).
document.querySelectorAll("button.copy").forEach((b) => b.addEventListener("click", () => {
  navigator.clipboard.writeText(b.dataset.copy).then(() => { b.textContent = "Copied"; });
}));
