// The HTTP API (the contract a script uses too): JSON in and out, errors as messages,
// a 401 asks for the token once, posts it to /api/session (an HttpOnly cookie) and retries.

const messages = () => document.getElementById("messages");

/** Show a message in the bar under the header; it goes away after a while or on click. */
export function showMessage(text, kind = "error") {
  const box = messages();
  if (!box) return;
  const item = document.createElement("div");
  item.className = `message ${kind}`;
  item.textContent = text;
  item.title = "click to dismiss";
  item.addEventListener("click", () => item.remove());
  box.append(item);
  while (box.children.length > 3) box.firstChild.remove();
  setTimeout(() => item.remove(), kind === "error" ? 12000 : 4000);
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let signingIn = null; // one token prompt at a time, shared by concurrent requests

function askToken() {
  if (signingIn) return signingIn;
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  const error = document.getElementById("token-error");
  signingIn = new Promise((resolve) => {
    const form = document.getElementById("token-form");
    const onSubmit = async (ev) => {
      ev.preventDefault();
      const res = await fetch("/api/session", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: input.value }),
        credentials: "same-origin",
      });
      if (res.ok) {
        form.removeEventListener("submit", onSubmit);
        error.textContent = "";
        input.value = "";
        dialog.close();
        signingIn = null;
        resolve();
      } else {
        error.textContent = (await detailOf(res)) || "wrong token";
      }
    };
    form.addEventListener("submit", onSubmit);
    dialog.addEventListener("cancel", (ev) => ev.preventDefault()); // Esc: nothing works without it
    dialog.showModal();
    input.focus();
  });
  return signingIn;
}

async function detailOf(res) {
  try {
    const body = await res.json();
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) return body.detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
    return JSON.stringify(body.detail ?? body);
  } catch {
    return res.statusText;
  }
}

/**
 * Call the API. `body` (an object) is sent as JSON, a FormData as multipart.
 * Returns the parsed JSON; throws ApiError (already shown as a message unless `quiet`).
 */
export async function api(path, { method = "GET", body, quiet = false, signal } = {}) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const init = { method, credentials: "same-origin", signal, headers: {} };
    if (body instanceof FormData) init.body = body;
    else if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      if (e.name === "AbortError") throw e;
      const err = new ApiError(0, `the server does not answer (${path})`);
      if (!quiet) showMessage(err.message);
      throw err;
    }
    if (res.status === 401) {
      await askToken();
      continue;
    }
    if (!res.ok) {
      const err = new ApiError(res.status, `${await detailOf(res)} (${res.status})`);
      if (!quiet) showMessage(err.message);
      throw err;
    }
    return res.status === 204 ? null : res.json();
  }
  throw new ApiError(401, "not signed in");
}

/** URLs of the binary resources (images, video): same origin, the session cookie applies. */
export const urls = {
  frame: (frameId) => `/api/frames/${encodeURIComponent(frameId)}.jpg`,
  crop: (detectionId) => `/api/detections/${encodeURIComponent(detectionId)}/crop.jpg`,
  video: (sourceId) => `/api/sources/${encodeURIComponent(sourceId)}/video`,
  upload: (uploadId) => `/api/uploads/${encodeURIComponent(uploadId)}.jpg`,
};
