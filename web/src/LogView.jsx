// The build log workspace, virtualized: only the rows in (and just around) the viewport
// are in the DOM, so a log of a hundred thousand lines opens and scrolls like a short one.
// Rows have a height known without measuring them: one text line (20 px) when lines do
// not wrap, and ceil(length / columns) text lines when they do (the font is monospaced).

import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { parseAnsi } from "./ansi.js";

const LINE = 20; // px, the CSS line-height of .log-line
const OVERSCAN = 40; // rows rendered above and below the viewport
const GUTTER_CH = 11; // fold toggle (2ch) + line number (8ch) + gap (1ch)
const TIME_CH = 9;

function measureChar(el) {
  const probe = document.createElement("span");
  probe.className = "log-probe";
  probe.textContent = "0".repeat(100);
  el.appendChild(probe);
  const width = probe.getBoundingClientRect().width / 100;
  probe.remove();
  return width || 8;
}

function formatTime(at) {
  if (!at) return "";
  const d = new Date(at * 1000);
  return d.toTimeString().slice(0, 8);
}

/** Heights of the rows when lines wrap: prefix sums of text lines, grown as rows are added. */
class Layout {
  constructor() {
    this.rows = null;
    this.columns = 0;
    this.count = 0;
    this.offsets = new Float64Array(1);
  }

  update(model, wrap, columns) {
    if (!wrap) {
      this.rows = null;
      return;
    }
    const rows = model.rows;
    if (rows !== this.rows || columns !== this.columns || rows.length < this.count) {
      this.rows = rows;
      this.columns = columns;
      this.count = 0;
    }
    if (this.offsets.length < rows.length + 1) {
      const grown = new Float64Array(Math.max(rows.length + 1, this.offsets.length * 2));
      grown.set(this.offsets.subarray(0, this.count + 1));
      this.offsets = grown;
    }
    for (let r = this.count; r < rows.length; r++) {
      // a step's header line never wraps (its status follows it on the same line)
      const length = model.isHeader(rows[r]) ? 1 : model.plain(rows[r]).length;
      const lines = Math.max(1, Math.ceil(length / columns));
      this.offsets[r + 1] = this.offsets[r] + lines * LINE;
    }
    this.count = rows.length;
  }

  offset(r) {
    return this.rows ? this.offsets[r] : r * LINE;
  }

  height(r) {
    return this.rows ? this.offsets[r + 1] - this.offsets[r] : LINE;
  }

  total(count) {
    return this.rows ? this.offsets[count] : count * LINE;
  }

  /** The row at pixel y. */
  rowAt(y, count) {
    if (!this.rows) return Math.min(count - 1, Math.max(0, Math.floor(y / LINE)));
    let lo = 0;
    let hi = count - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.offsets[mid] <= y) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

function highlight(spans, plain, needle) {
  if (!needle) return spans.map(renderSpan);
  const lower = plain.toLowerCase();
  const want = needle.toLowerCase();
  const ranges = [];
  for (let at = lower.indexOf(want); at >= 0; at = lower.indexOf(want, at + want.length)) {
    ranges.push([at, at + want.length]);
  }
  if (!ranges.length) return spans.map(renderSpan);
  const out = [];
  let pos = 0;
  let k = 0;
  spans.forEach((span, s) => {
    const start = pos;
    const end = pos + span.text.length;
    pos = end;
    let cursor = start;
    const parts = [];
    while (cursor < end) {
      while (k < ranges.length && ranges[k][1] <= cursor) k++;
      const range = ranges[k];
      if (!range || range[0] >= end) {
        parts.push(span.text.slice(cursor - start));
        break;
      }
      if (range[0] > cursor) {
        parts.push(span.text.slice(cursor - start, range[0] - start));
        cursor = range[0];
      }
      const stop = Math.min(end, range[1]);
      parts.push(<mark>{span.text.slice(cursor - start, stop - start)}</mark>);
      cursor = stop;
    }
    out.push(
      <span key={s} class={span.cls || undefined} style={span.style || undefined}>
        {parts}
      </span>,
    );
  });
  return out;
}

function renderSpan(span, s) {
  if (!span.cls && !span.style) return span.text;
  return (
    <span key={s} class={span.cls || undefined} style={span.style || undefined}>
      {span.text}
    </span>
  );
}

export function LogView({
  model,
  version,
  wrap,
  timestamps,
  follow,
  onFollow,
  needle,
  current,
  target,
  scrollRequest,
  onLineLink,
  onToggle,
}) {
  const scroller = useRef(null);
  const layout = useRef(new Layout());
  const charWidth = useRef(0);
  const maxLength = useRef({ count: 0, value: 0, model: null });
  const [view, setView] = useState({ top: 0, height: 600, width: 1000 });
  const frame = useRef(0);

  useLayoutEffect(() => {
    const el = scroller.current;
    charWidth.current = measureChar(el);
    const measure = () =>
      setView({ top: el.scrollTop, height: el.clientHeight, width: el.clientWidth });
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(el);
    return () => observer.disconnect();
  }, []);

  const gutter = GUTTER_CH + (timestamps ? TIME_CH : 0);
  const columns = Math.max(20, Math.floor(view.width / (charWidth.current || 8)) - gutter - 1);
  layout.current.update(model, wrap, columns);
  const rows = model.rows;
  const count = rows.length;
  const total = layout.current.total(count);

  if (!wrap) {
    const m = maxLength.current;
    if (m.model !== model || count < m.count || m.version !== model.version) {
      // grow incrementally over the rows added since last time
      if (m.model !== model || count < m.count || m.rows !== rows) {
        m.count = 0;
        m.value = 0;
      }
      for (let r = m.count; r < count; r++) {
        const n = model.plain(rows[r]).length;
        if (n > m.value) m.value = n;
      }
      m.count = count;
      m.model = model;
      m.rows = rows;
      m.version = model.version;
    }
  }

  // Follow: stay at the bottom as lines arrive.
  // (After every render: a new line, a new width or a folded step can all move the end.)
  // `pinned` is where the view was left at the bottom. A view above it and above the end
  // was moved by the reader (a scrollbar drag, Home) before their scroll event arrived:
  // that stops following instead of being pulled back down by the next render.
  const pinned = useRef(-1);
  useLayoutEffect(() => {
    const el = scroller.current;
    if (!follow || !el) {
      pinned.current = -1;
      return;
    }
    const end = el.scrollHeight - el.clientHeight;
    if (pinned.current >= 0 && el.scrollTop < pinned.current - 1 && el.scrollTop < end - 1) {
      pinned.current = -1;
      setView((v) => ({ ...v, top: el.scrollTop }));
      onFollow(false);
      return;
    }
    if (el.scrollTop < end - 1) {
      el.scrollTop = el.scrollHeight;
      if (el.scrollTop !== view.top) setView((v) => ({ ...v, top: el.scrollTop }));
    }
    pinned.current = el.scrollTop;
  });

  // A request to show one line (a #L link, a search hit, the first error).
  useLayoutEffect(() => {
    if (!scrollRequest) return;
    const el = scroller.current;
    const r = model.rowOf(scrollRequest.line);
    if (r < 0 || !el) return;
    const y = layout.current.offset(r);
    el.scrollTop = Math.max(0, y - Math.floor(el.clientHeight / 3));
    setView((v) => ({ ...v, top: el.scrollTop }));
  }, [scrollRequest]);

  const onScroll = () => {
    const el = scroller.current;
    if (frame.current) return;
    frame.current = requestAnimationFrame(() => {
      frame.current = 0;
      setView({ top: el.scrollTop, height: el.clientHeight, width: el.clientWidth });
      const atBottom = el.scrollTop + el.clientHeight >= el.scrollHeight - LINE;
      if (follow && !atBottom) onFollow(false); // the Follow button turns it on again
    });
  };

  useEffect(() => () => frame.current && cancelAnimationFrame(frame.current), []);

  // Scrolling up by wheel or key stops following at once, before the next line arrives.
  const stopFollowing = (e) => {
    if (!follow) return;
    if ((e.type === "wheel" && e.deltaY < 0) || (e.type === "keydown" && ["ArrowUp", "PageUp", "Home"].includes(e.key))) onFollow(false);
  };

  let first = 0;
  let last = -1;
  if (count) {
    first = Math.max(0, layout.current.rowAt(view.top, count) - OVERSCAN);
    last = Math.min(count - 1, layout.current.rowAt(view.top + view.height, count) + OVERSCAN);
  }
  const items = [];
  for (let r = first; r <= last; r++) {
    const i = rows[r];
    const header = model.isHeader(i);
    const group = header ? model.groups[model.groupOf[i]] : null;
    const folded = header && model.folded.has(model.groupOf[i]);
    const plain = model.plain(i);
    const spans = parseAnsi(model.contents[i]);
    const classes = ["log-line"];
    if (header) classes.push("hdr");
    if (model.streams[i] === "stderr") classes.push("stderr");
    if (target === i) classes.push("target");
    if (current === i) classes.push("current");
    items.push(
      <div
        key={i}
        class={classes.join(" ")}
        data-line={i + 1}
        style={wrap ? { height: `${layout.current.height(r)}px` } : undefined}
      >
        <span class="tg">
          {header ? (
            <button
              type="button"
              class="fold"
              aria-expanded={folded ? "false" : "true"}
              aria-label={`${folded ? "Unfold" : "Fold"} step ${group.name}`}
              onClick={() => onToggle(model.groupOf[i])}
            >
              {folded ? "▸" : "▾"}
            </button>
          ) : null}
        </span>
        <a
          class="ln"
          href={`#L${i + 1}`}
          tabIndex={-1}
          onClick={(e) => {
            e.preventDefault();
            onLineLink(i);
          }}
        >
          {i + 1}
        </a>
        {timestamps ? <span class="ts">{formatTime(model.times[i])}</span> : null}
        <span class="txt">
          {highlight(spans, plain, needle)}
          {header && group.status !== "running" ? (
            <span class={`step-status st-${group.status}`}> [{group.status}{group.detail ? ` ${group.detail}` : ""}]</span>
          ) : null}
        </span>
      </div>,
    );
  }
  const width = wrap ? undefined : `${maxLength.current.value + gutter + 4}ch`;
  return (
    <div
      class={`log-scroll${wrap ? " wrap" : ""}`}
      ref={scroller}
      onScroll={onScroll}
      onWheel={stopFollowing}
      onKeyDown={stopFollowing}
      tabIndex={0}
      role="region"
      aria-label="Build log"
    >
      <div class="log-space" style={{ height: `${total}px`, minWidth: width }}>
        <div class="log-rows" style={{ transform: `translateY(${count ? layout.current.offset(first) : 0}px)` }}>
          {items}
        </div>
      </div>
    </div>
  );
}
