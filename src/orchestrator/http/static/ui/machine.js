// The state machine as SVG, drawn from GET /state-machine: one box per state, one arrow per row
// of the transition table. The workflow's current state is filled, the states it went through
// and the arrows it took are marked.

import { svg } from "./dom.js";

const BOX_W = 92;
const BOX_H = 34;
// Where the known states go; any other state gets a place in a third row.
const PLACES = {
  INIT: [60, 50],
  PREPARE: [200, 50],
  EXECUTE: [340, 50],
  VALIDATE: [480, 50],
  COMPLETE: [620, 50],
  FAILED: [270, 160],
  CANCELLED: [550, 160],
};
const WIDTH = 680;

function place(state, index) {
  return PLACES[state] || [60 + (index % 5) * 140, 250];
}

/** Where the segment from the centre of one box to the centre of another leaves the first. */
function border([cx, cy], [tx, ty]) {
  const dx = tx - cx;
  const dy = ty - cy;
  if (dx === 0 && dy === 0) return [cx, cy];
  const sx = dx === 0 ? Infinity : BOX_W / 2 / Math.abs(dx);
  const sy = dy === 0 ? Infinity : BOX_H / 2 / Math.abs(dy);
  const s = Math.min(sx, sy);
  return [cx + dx * s, cy + dy * s];
}

/**
 * The machine for `workflow` (an API workflow: current_state, transitions) and `machine` (the
 * API's /state-machine answer), as an <svg>.
 */
export function drawMachine(machine, workflow) {
  const states = machine.states;
  const at = new Map(states.map((s, i) => [s, place(s, i)]));
  const visited = new Set(workflow.transitions.flatMap((t) => [t.from_state, t.to_state]));
  visited.add("INIT");
  const taken = new Set(workflow.transitions.map((t) => `${t.from_state}>${t.to_state}`));
  const height = states.some((s) => !PLACES[s]) ? 290 : 200;

  const edges = machine.transitions.map((row) => {
    const from = at.get(row.from_state);
    const to = at.get(row.to_state);
    const key = `${row.from_state}>${row.to_state}`;
    const cls = `edge trigger-${row.trigger}${taken.has(key) ? " taken" : ""}`;
    if (row.trigger === "retry") {
      // Back from FAILED to INIT: a curve below the main row.
      const [x1, y1] = [from[0] - BOX_W / 2, from[1]];
      const [x2, y2] = [to[0], to[1] + BOX_H / 2];
      return svg(
        "g",
        { class: cls },
        svg("path", { d: `M ${x1} ${y1} C ${x2 - 10} ${y1}, ${x2} ${y1 - 20}, ${x2} ${y2}`, "marker-end": "url(#arrow)" }),
        svg("text", { class: "edge-label", x: (x1 + x2) / 2 - 30, y: y1 - 8, text: row.trigger }),
      );
    }
    const [x1, y1] = border(from, to);
    const [x2, y2] = border(to, from);
    const label =
      row.from_state !== row.to_state && from[1] === to[1]
        ? svg("text", {
            class: "edge-label",
            x: (x1 + x2) / 2,
            y: y1 - BOX_H / 2 - 4,
            "text-anchor": "middle",
            text: row.trigger,
          })
        : null;
    return svg(
      "g",
      { class: cls },
      svg("line", { x1, y1, x2, y2, "marker-end": "url(#arrow)" }),
      label,
    );
  });

  const nodes = states.map((state) => {
    const [x, y] = at.get(state);
    const classes = ["node", `status-${state.toLowerCase()}`];
    if (visited.has(state)) classes.push("visited");
    if (state === workflow.current_state) classes.push("current");
    return svg(
      "g",
      { class: classes.join(" "), "data-state": state },
      svg("rect", { x: x - BOX_W / 2, y: y - BOX_H / 2, width: BOX_W, height: BOX_H, rx: 6 }),
      svg("text", { x, y: y + 4, "text-anchor": "middle", text: state }),
    );
  });

  return svg(
    "svg",
    {
      viewBox: `0 0 ${WIDTH} ${height}`,
      class: "machine-svg",
      role: "img",
      "aria-label": `State machine; current state ${workflow.current_state}`,
    },
    svg(
      "defs",
      {},
      svg(
        "marker",
        { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
        svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow-head" }),
      ),
    ),
    ...edges,
    ...nodes,
  );
}
