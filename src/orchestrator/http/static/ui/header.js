// The header: workflows by state (GET /execution/stats, the stats projection) and a chart of
// workflows started and finished per minute over the last hour (GET /execution/activity, counted
// from the log), kept current between loads by the live feed.

import { api } from "./api.js";
import { count, el, svg, throttle } from "./dom.js";

export const STATES = ["INIT", "PREPARE", "EXECUTE", "VALIDATE", "COMPLETE", "FAILED", "CANCELLED"];
const FINISHED = new Set(["COMPLETE", "FAILED", "CANCELLED"]);
const STARTED_TYPES = new Set(["WorkflowStarted", "WorkflowLaunched"]);

const WIDTH = 480;
const HEIGHT = 90;
const AXIS = 14;

export class Header {
  constructor({ onPickStatus }) {
    this.counts = document.getElementById("counts");
    this.chart = document.getElementById("activity-chart");
    this.note = document.getElementById("activity-note");
    this.onPickStatus = onPickStatus;
    this.stats = null;
    // minute (ms since epoch, UTC) -> {started, finished}, from the server plus the live feed
    this.minutes = new Map();
    this.serverPosition = 0;
    // While the server is still counting a busy hour, its next answer brings the events too.
    this.serverComplete = false;
    // events counted here since the server's answer: re-applied when a later answer lands
    this.local = [];
    this.retry = null;
    // Live events redraw the chart at most four times a second, not once each.
    this.chartChanged = throttle(() => this.renderChart(), 250);
  }

  /** Workflows counted in `status` (or in all, for ""); null before the first load. */
  total(status) {
    if (this.stats === null) return null;
    return status ? this.stats[status.toLowerCase()] : this.stats.total;
  }

  async loadStats() {
    const answer = await api("/execution/stats");
    this.stats = answer.workflows;
    this.renderCounts();
  }

  renderCounts() {
    const tiles = [["", "total", this.stats.total]];
    for (const state of STATES) tiles.push([state, state, this.stats[state.toLowerCase()]]);
    this.counts.replaceChildren(
      ...tiles.map(([status, label, value]) =>
        el(
          "li",
          { class: `count status-${label.toLowerCase()}`, "data-status": status || "all" },
          el(
            "button",
            {
              type: "button",
              title: status ? `Show ${status} workflows` : "Show all workflows",
              onclick: () => this.onPickStatus(status),
            },
            el("span", { class: "count-value", text: count(value ?? 0) }),
            el("span", { class: "count-label", text: label }),
          ),
        ),
      ),
    );
  }

  async loadActivity() {
    clearTimeout(this.retry);
    const answer = await api("/execution/activity?minutes=60");
    this.minutes = new Map(
      answer.minutes.map((m) => [Date.parse(m.minute), { started: m.started, finished: m.finished }]),
    );
    this.serverPosition = answer.position;
    this.serverComplete = answer.complete;
    this.local = this.local.filter((item) => item.position > answer.position);
    for (const item of this.local) this.bump(item);
    this.note.textContent = answer.complete ? "" : "(still counting the last hour…)";
    // A very busy hour is counted over several calls: ask again soon for the rest.
    if (!answer.complete) this.retry = setTimeout(() => this.loadActivity().catch(() => {}), 1000);
    this.renderChart();
  }

  bump(item) {
    let minute = this.minutes.get(item.minute);
    if (minute === undefined) {
      minute = { started: 0, finished: 0 };
      this.minutes.set(item.minute, minute);
    }
    minute.started += item.started;
    minute.finished += item.finished;
  }

  /** Count one event of the live feed; true if it changes workflow counts. */
  onEvent(event) {
    if (!event.stream_id.startsWith("workflow-")) return false;
    const started = STARTED_TYPES.has(event.type) ? 1 : 0;
    const finished =
      event.type === "WorkflowTransitioned" && FINISHED.has(event.data?.to_state) ? 1 : 0;
    if ((started || finished) && this.serverComplete && event.position > this.serverPosition) {
      const minute = Math.floor(Date.parse(event.recorded_at) / 60000) * 60000;
      const item = { position: event.position, minute, started, finished };
      this.local.push(item);
      if (this.local.length > 10000) this.local.shift();
      this.bump(item);
      this.chartChanged();
    }
    return (
      started > 0 ||
      event.type === "WorkflowTransitioned" ||
      event.type === "WorkflowCreated" ||
      event.type === "WorkflowDeleted"
    );
  }

  renderChart() {
    const now = Math.floor(Date.now() / 60000) * 60000;
    const slots = [];
    for (let i = 59; i >= 0; i -= 1) {
      const minute = now - i * 60000;
      slots.push([minute, this.minutes.get(minute) || { started: 0, finished: 0 }]);
    }
    const top = Math.max(1, ...slots.map(([, m]) => Math.max(m.started, m.finished)));
    const slot = WIDTH / slots.length;
    const bar = Math.max(1, slot / 2 - 1);
    const plot = HEIGHT - AXIS;
    const scale = (value) => (value / top) * (plot - 4);
    let started = 0;
    let finished = 0;
    const bars = slots.map(([minute, m], index) => {
      started += m.started;
      finished += m.finished;
      const x = index * slot;
      const label = `${new Date(minute).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}: ${m.started} started, ${m.finished} finished`;
      return svg(
        "g",
        { class: "minute" },
        svg("title", { text: label }),
        svg("rect", { class: "hit", x, y: 0, width: slot, height: plot }),
        svg("rect", {
          class: "bar started",
          x: x + 0.5,
          y: plot - scale(m.started),
          width: bar,
          height: scale(m.started),
        }),
        svg("rect", {
          class: "bar finished",
          x: x + 0.5 + bar,
          y: plot - scale(m.finished),
          width: bar,
          height: scale(m.finished),
        }),
      );
    });
    const axis = [
      svg("line", { class: "axis", x1: 0, y1: plot, x2: WIDTH, y2: plot }),
      svg("text", { class: "tick", x: 0, y: HEIGHT - 2, text: "−60 min" }),
      svg("text", { class: "tick", x: WIDTH / 2, y: HEIGHT - 2, "text-anchor": "middle", text: "−30 min" }),
      svg("text", { class: "tick", x: WIDTH, y: HEIGHT - 2, "text-anchor": "end", text: "now" }),
      svg("text", { class: "tick", x: 2, y: 10, text: `${count(top)}/min` }),
    ];
    this.chart.replaceChildren(
      svg(
        "svg",
        {
          viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
          role: "img",
          "aria-label": `Last hour: ${started} workflows started, ${finished} finished`,
          class: "activity-svg",
        },
        ...bars,
        ...axis,
      ),
    );
    document.getElementById("started-total").textContent = count(started);
    document.getElementById("finished-total").textContent = count(finished);
  }
}
