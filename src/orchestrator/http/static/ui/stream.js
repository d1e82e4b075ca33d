// The live feed: GET /events/stream read with fetch (EventSource cannot send the bearer
// header), parsed as Server-Sent Events, and reconnected for as long as the page is open.
//
// EventSource resends Last-Event-ID only within one object's life and gives up for good on some
// failures; here every reconnect, after a server restart too, resumes right after the last
// event seen. Before resuming, /health says where the log's head is: a log that is behind the
// last event seen (a new in-memory store) or very far ahead (the tab slept for hours) is not
// replayed event by event; the feed starts from now and the page reloads what it shows instead.

import { authHeaders, ensureToken, forgetToken } from "./api.js";

/** More missed events than this: reload the views rather than replay them one by one. */
const MAX_REPLAY = 5000;
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 5000;

function parseFrame(frame) {
  const event = { id: null, type: "message", data: [] };
  for (const line of frame.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") event.id = value;
    else if (field === "event") event.type = value;
    else if (field === "data") event.data.push(value);
  }
  return event.data.length ? { ...event, data: event.data.join("\n") } : null;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Follow the feed. `onEvent(event)` gets each event (the API's EventOut: position, stream_id,
 * version, type, data, recorded_at, ...); `onOpen({resumed})` runs on each connect (`resumed`:
 * no event was missed, so there is nothing to reload); `onState(state)` tells "live",
 * "reconnecting" or "connecting".
 */
export function follow({ onEvent, onOpen, onState }) {
  let lastId = null;
  let connects = 0;

  async function startPoint() {
    // Where to resume from; null: from now on (and reload what the page shows).
    if (lastId === null) return null;
    const response = await fetch("/health", { headers: authHeaders(), cache: "no-store" });
    const health = await response.json();
    const head = Number(health.log_position);
    if (!Number.isFinite(head) || head < lastId || head - lastId > MAX_REPLAY) return null;
    return lastId;
  }

  async function connectOnce() {
    await ensureToken();
    const from = await startPoint();
    lastId = from;
    const headers = { Accept: "text/event-stream", ...authHeaders() };
    if (from !== null) headers["Last-Event-ID"] = String(from);
    const response = await fetch("/events/stream", { headers, cache: "no-store" });
    if (response.status === 401) {
      forgetToken();
      await ensureToken("The server did not accept that token.");
      return;
    }
    if (!response.ok || !response.body) throw new Error(`event stream: HTTP ${response.status}`);
    connects += 1;
    onState("live");
    onOpen({ resumed: from !== null, first: connects === 1 });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end = buffer.indexOf("\n\n");
      while (end >= 0) {
        const frame = parseFrame(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        end = buffer.indexOf("\n\n");
        if (frame === null) continue;
        if (frame.id !== null && /^[0-9]+$/.test(frame.id)) {
          lastId = Number(frame.id);
          // Shown for people and tests alike: where a reconnect will resume.
          document.body.dataset.lastEventId = frame.id;
        }
        try {
          onEvent(JSON.parse(frame.data));
        } catch (error) {
          console.warn("dashboard: an event could not be shown", error);
        }
      }
    }
  }

  (async () => {
    let delay = FIRST_DELAY_MS;
    for (;;) {
      const began = Date.now();
      try {
        await connectOnce();
      } catch {
        // the server is away (restarting, or the network): try again below
      }
      if (Date.now() - began > MAX_DELAY_MS) delay = FIRST_DELAY_MS; // it was up a while
      onState("reconnecting");
      await sleep(delay);
      delay = Math.min(delay * 2, MAX_DELAY_MS);
    }
  })();

  return { lastEventId: () => lastId };
}
