// Pages over services a server may not run (subscriptions, sagas): the list
// as the service gives it, or a note when the server has no such service.
import { h, api, json, ApiError } from "../lib.js";

export async function optional(ctx, title, path, key) {
  let r;
  try {
    r = await api("GET", path);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      return h("div", {}, h("h1", {}, title),
        h("p", { class: "note", role: "status" }, `This server does not run the ${key} service (${path} is not found).`));
    }
    throw e;
  }
  const items = Array.isArray(r) ? r : r?.[key] || [];
  return h("div", {}, h("h1", {}, title),
    h("p", {}, `${items.length} ${key}.`),
    items.map((it) => h("details", {}, h("summary", {}, String(it.name ?? it.id ?? "")), json(it))));
}
