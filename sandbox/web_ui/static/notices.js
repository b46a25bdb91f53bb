// Toast notices (top right): errors of the page, interactions the bot did not answer.
export function notify(text, level = "info", ms = 7000) {
  const box = document.getElementById("notices");
  const el = document.createElement("div");
  el.className = `notice ${level}`;
  el.textContent = text;
  el.addEventListener("click", () => el.remove());
  box.appendChild(el);
  setTimeout(() => el.remove(), ms);
}
