// A build log held outside the component tree: the lines, their steps, which steps are
// folded, and the rows a viewer would show. Line numbers (the #L links) count from 1 in
// the order the lines were written.

import { plainText } from "./ansi.js";

const STEP_START = /^\[oore\] step (\S+?): /;
const STEP_END = /^\[oore\] step (\S+) (succeeded|failed|canceled|skipped|timed_out)\b(.*)$/;
const ERROR = /\b(error|errors|fatal|failed|failure|exception|panic)\b/i;

export class LogModel {
  constructor() {
    this.reset();
  }

  reset() {
    this.contents = []; // raw lines (with escape codes)
    this.streams = [];
    this.times = [];
    this.plains = []; // visible text, filled lazily
    this.groupOf = []; // index into this.groups, or -1 outside any step
    this.groups = []; // {name, start, end (exclusive, null while open), status, detail}
    this.folded = new Set();
    this.rows = []; // line indices shown, in order
    this.open = -1; // the group lines are being added to
    this.version = 0;
  }

  get length() {
    return this.contents.length;
  }

  plain(i) {
    let text = this.plains[i];
    if (text === undefined) {
      text = plainText(this.contents[i]);
      this.plains[i] = text;
    }
    return text;
  }

  append(lines) {
    for (const line of lines) {
      const i = this.contents.length;
      const content = line.content;
      this.contents.push(content);
      this.streams.push(line.stream);
      this.times.push(line.at ?? line.created_at ?? null);
      let group = this.open;
      if (content.startsWith("[oore] step ")) {
        const start = STEP_START.exec(content);
        const end = start ? null : STEP_END.exec(content);
        if (start) {
          if (this.open >= 0) this.groups[this.open].end = i;
          group = this.groups.length;
          this.groups.push({ name: start[1], start: i, end: null, status: "running", detail: "" });
          this.open = group;
        } else if (end && this.open >= 0) {
          const current = this.groups[this.open];
          current.status = end[2];
          current.detail = end[3].trim();
          current.end = i + 1;
          this.open = -1;
        }
      }
      this.groupOf.push(group);
      if (group < 0 || !this.folded.has(group) || this.groups[group].start === i) this.rows.push(i);
    }
    this.version++;
  }

  isHeader(i) {
    const g = this.groupOf[i];
    return g >= 0 && this.groups[g].start === i;
  }

  toggle(group, fold) {
    const shouldFold = fold ?? !this.folded.has(group);
    if (shouldFold) this.folded.add(group);
    else this.folded.delete(group);
    this.rebuildRows();
  }

  /** Unfold the step holding line i, so it can be shown. */
  reveal(i) {
    const g = this.groupOf[i];
    if (g >= 0 && this.folded.has(g) && this.groups[g].start !== i) {
      this.folded.delete(g);
      this.rebuildRows();
    }
  }

  rebuildRows() {
    const rows = [];
    for (let i = 0; i < this.contents.length; i++) {
      const g = this.groupOf[i];
      if (g < 0 || !this.folded.has(g) || this.groups[g].start === i) rows.push(i);
    }
    this.rows = rows;
    this.version++;
  }

  /** The row showing line i (binary search: rows are sorted), or -1. */
  rowOf(i) {
    let lo = 0;
    let hi = this.rows.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = this.rows[mid];
      if (v === i) return mid;
      if (v < i) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** Lines whose text holds needle (case-insensitive). */
  search(needle) {
    if (!needle) return [];
    const lower = needle.toLowerCase();
    const found = [];
    for (let i = 0; i < this.contents.length; i++) {
      if (this.plain(i).toLowerCase().includes(lower)) found.push(i);
    }
    return found;
  }

  firstError() {
    for (let i = 0; i < this.contents.length; i++) {
      const text = this.plain(i);
      if (text.startsWith("[oore] step ") && STEP_END.test(text)) {
        if (/ (failed|timed_out) /.test(text)) return i;
        continue;
      }
      if (ERROR.test(text)) return i;
    }
    return -1;
  }

  raw() {
    return this.contents.join("\n") + (this.contents.length ? "\n" : "");
  }
}
