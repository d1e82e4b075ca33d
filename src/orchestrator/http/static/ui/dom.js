// Small helpers shared by the dashboard's modules: building elements, formatting times.
// Text always goes in as text (textContent), never as HTML: names and payloads are data.

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.setAttribute("class", value);
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** An HTML element with attributes (`text` sets its text, `onclick` adds a listener). */
export function el(tag, attrs = {}, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element, as `el`. */
export function svg(tag, attrs = {}, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

/** A time as local "HH:MM:SS" today, "MM-DD HH:MM" this year, else "YYYY-MM-DD". */
export function shortTime(iso) {
  if (!iso) return "—";
  const at = new Date(iso);
  const now = new Date();
  const time = `${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}`;
  if (at.toDateString() === now.toDateString()) return time;
  const day = `${pad(at.getMonth() + 1)}-${pad(at.getDate())}`;
  if (at.getFullYear() === now.getFullYear()) return `${day} ${time.slice(0, 5)}`;
  return `${at.getFullYear()}-${day}`;
}

/** A time as local "YYYY-MM-DD HH:MM:SS.mmm". */
export function fullTime(iso) {
  if (!iso) return "—";
  const at = new Date(iso);
  return (
    `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())} ` +
    `${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}.` +
    pad(at.getMilliseconds(), 3)
  );
}

/** Seconds as "0.42 s", "12.3 s", "4 min 05 s", "2 h 07 min". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, seconds);
  if (s < 10) return `${s.toFixed(2)} s`;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${pad(Math.floor(s % 60))} s`;
  return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} min`;
}

/** Seconds from one ISO time to another (or to now). */
export function secondsBetween(fromIso, toIso) {
  if (!fromIso) return null;
  const end = toIso ? Date.parse(toIso) : Date.now();
  return (end - Date.parse(fromIso)) / 1000;
}

export const RUNNING_STATES = new Set(["INIT", "PREPARE", "EXECUTE", "VALIDATE"]);

/** How long a workflow ran: to its end, or to now while it still runs. */
export function workflowSeconds(workflow) {
  if (!workflow.started_at) return null;
  if (workflow.completed_at) return secondsBetween(workflow.started_at, workflow.completed_at);
  if (RUNNING_STATES.has(workflow.status)) return secondsBetween(workflow.started_at, null);
  const last = workflow.transitions.at(-1);
  return secondsBetween(workflow.started_at, last ? last.timestamp : workflow.updated_at);
}

/** A status badge. */
export function badge(status) {
  return el("span", { class: `badge status-${String(status).toLowerCase()}`, text: status });
}

/** Calls `fn` at most once per `ms`, the last call winning (trailing edge). */
export function throttle(fn, ms) {
  let timer = null;
  let last = 0;
  return () => {
    if (timer !== null) return;
    const wait = Math.max(0, last + ms - Date.now());
    timer = setTimeout(() => {
      timer = null;
      last = Date.now();
      fn();
    }, wait);
  };
}

/** A number with thousands separators. */
export const count = (n) => Number(n).toLocaleString("en-US");
