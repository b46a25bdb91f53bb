// Small helpers around the UI server's JSON API; a refusal shows as a notice and rejects.
import { notify } from "./notices.js";

export async function post(path, body, files) {
  let init;
  if (files && files.length) {
    const form = new FormData();
    form.append("json", JSON.stringify(body));
    for (const [field, file] of files) form.append(field, file, file.name);
    init = { method: "POST", body: form };
  } else {
    init = { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (err) {
    notify(`The sandbox server cannot be reached (${err.message}).`, "error");
    throw err;
  }
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok && path !== "/api/relay") {
    notify(data.error || `Request failed (${resp.status})`, "error");
    throw new Error(data.error || String(resp.status));
  }
  return { status: resp.status, data };
}
