// Calls to the gateway: relative URLs only (the console is served at <base>/console/, the API
// at <base>/api/), the API key in X-API-Key and the admin token as a bearer token, both kept
// for this tab's session only (sessionStorage), never in a URL.

const KEY = "aimp.apiKey";
const ADMIN = "aimp.adminToken";

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  set key(v) { v ? sessionStorage.setItem(KEY, v) : sessionStorage.removeItem(KEY); },
  get admin() { return sessionStorage.getItem(ADMIN); },
  set admin(v) { v ? sessionStorage.setItem(ADMIN, v) : sessionStorage.removeItem(ADMIN); },
};

/// An error answer of the gateway, in its shape {"error": {code, message, param}}.
export class ApiError extends Error {
  constructor(status, code, message, param) {
    super(message);
    this.status = status;
    this.code = code;
    this.param = param;
  }
}

/// `path` is relative to the gateway's base ("api/runs").
export async function api(method, path, body, { admin = false, key } = {}) {
  const headers = {};
  if (admin) headers["Authorization"] = `Bearer ${session.admin || ""}`;
  else headers["X-API-Key"] = key ?? session.key ?? "";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(`../${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw await failure(res);
  if (res.status === 204) return null;
  return res.json();
}

async function failure(res) {
  let e = {};
  try { e = (await res.json()).error || {}; } catch { /* not JSON */ }
  return new ApiError(res.status, e.code || "http_" + res.status, e.message || res.statusText, e.param);
}

export function run(body) {
  return api("POST", "api/runs", body);
}

export function enc(s) {
  return encodeURIComponent(s);
}

/// The upload flow of the API page: init, PUT the bytes, complete. Gives the media record.
export async function upload(file) {
  const init = await api("POST", "api/media/upload/init", {
    filename: file.name.split("/").pop() || "picture",
    content_type: file.type || guessType(file.name),
    media_type: "image",
    size_bytes: file.size,
  });
  // The upload URL is absolute; its path from api/ on is taken relative to this console, so
  // a gateway behind a proxy under a sub-path is reached the same way as the API.
  const url = new URL(init.upload_url);
  const at = url.pathname.lastIndexOf("api/media/upload/");
  const put = await fetch(`../${url.pathname.slice(at)}${url.search}`, {
    method: init.method || "PUT",
    headers: init.headers || {},
    body: file,
  });
  if (!put.ok) throw await failure(put);
  return api("POST", "api/media/upload/complete", { upload_id: init.upload_id });
}

const TYPES = { jpg: "image/jpeg", jpeg: "image/jpeg", png: "image/png", webp: "image/webp", gif: "image/gif" };

export function guessType(name) {
  return TYPES[name.split(".").pop().toLowerCase()] || "application/octet-stream";
}

export function isPicture(file) {
  return Object.values(TYPES).includes(file.type || guessType(file.name));
}

/// Pictures as object URLs, fetched with the key (an <img src> cannot send it); one per
/// media_ref and size, kept for the session.
const thumbs = new Map();

export async function thumbnail(mediaRef, size = 256) {
  const id = `${mediaRef}@${size}`;
  if (!thumbs.has(id)) {
    thumbs.set(id, (async () => {
      const res = await fetch(`../api/media/${enc(mediaRef)}/thumbnail?size=${size}`, {
        headers: { "X-API-Key": session.key || "" },
      });
      if (!res.ok) throw await failure(res);
      return URL.createObjectURL(await res.blob());
    })());
  }
  return thumbs.get(id).catch((e) => { thumbs.delete(id); throw e; });
}

/// The marketplace's models (with their modes), and the workspace's knowledge bases.
export async function listModels() {
  return (await api("GET", "api/marketplace/models")).data;
}

export async function listKnowledgeBases() {
  return (await api("GET", "api/knowledge-bases")).data;
}
