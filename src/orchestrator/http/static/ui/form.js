// The form that starts a workflow (POST /workflow/start). The config is checked before anything
// is sent: it must be a JSON object. Each submission carries an Idempotency-Key, so a double
// click or a retried request starts one workflow, not two.

import { api, idempotencyKey } from "./api.js";

const $ = (id) => document.getElementById(id);

/** The config text as an object, or a sentence saying what is wrong with it. */
export function parseConfig(text) {
  if (!text.trim()) return { config: null };
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { problem: `Config is not valid JSON: ${error.message}` };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { problem: "Config must be a JSON object, such as {\"iterations\": 100}." };
  }
  return { config: value };
}

export class StartForm {
  constructor({ onStarted, onError }) {
    this.onStarted = onStarted;
    this.onError = onError;
    this.form = $("start-form");
    this.config = $("start-config");
    this.problem = $("config-error");
    this.result = $("start-result");
    this.submit = $("start-submit");
    this.config.addEventListener("input", () => this.check());
    $("start-name").addEventListener("input", () => this.check());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.check();
  }

  /** Show what is wrong with the fields; whether they can be sent. */
  check() {
    const { problem } = parseConfig(this.config.value);
    this.problem.hidden = !problem;
    this.problem.textContent = problem || "";
    this.config.setAttribute("aria-invalid", problem ? "true" : "false");
    const named = $("start-name").value.trim().length > 0;
    this.submit.disabled = Boolean(problem) || !named;
    return !problem && named;
  }

  async send() {
    if (!this.check()) return;
    const { config } = parseConfig(this.config.value);
    const body = {
      name: $("start-name").value.trim(),
      description: $("start-description").value.trim() || null,
      config,
      auto_start: this.form.elements.mode.value === "automatic",
    };
    this.submit.disabled = true;
    this.result.textContent = "Starting…";
    try {
      const answer = await api("/workflow/start", {
        method: "POST",
        body,
        headers: { "Idempotency-Key": idempotencyKey() },
      });
      this.result.textContent = `Started workflow ${answer.workflow_id} (${answer.name}).`;
      this.result.dataset.workflowId = String(answer.workflow_id);
      this.onStarted(answer);
    } catch (error) {
      this.result.textContent = "";
      this.onError(error);
    } finally {
      this.check();
    }
  }
}
