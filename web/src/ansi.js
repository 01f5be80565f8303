// ANSI escape codes of one log line turned into styled spans: the 16 colours and bold,
// dim, italic and underline become classes; 256-colour and true-colour codes become a
// colour set through the style property (the CSP allows CSSOM, not style attributes).
// Other control sequences (cursor moves, OSC titles and links) are dropped.

const PALETTE = [
  "#000000", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
  "#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff",
];

function color256(n) {
  if (n < 16) return PALETTE[n];
  if (n < 232) {
    const i = n - 16;
    const steps = [0, 95, 135, 175, 215, 255];
    const r = steps[Math.floor(i / 36)];
    const g = steps[Math.floor(i / 6) % 6];
    const b = steps[i % 6];
    return `rgb(${r},${g},${b})`;
  }
  const v = 8 + (n - 232) * 10;
  return `rgb(${v},${v},${v})`;
}

// ESC [ params letter | ESC ] ... BEL or ESC \ | ESC single char
// eslint-disable-next-line no-control-regex
const ESCAPES = /\x1b\[([0-9;:?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?/g;
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g;

/** The line as a terminal would finally show it: the text after the last carriage return. */
function lastFrame(content) {
  let text = content.endsWith("\r") ? content.slice(0, -1) : content;
  const cr = text.lastIndexOf("\r");
  if (cr >= 0) text = text.slice(cr + 1);
  return text.includes("\t") ? expandTabs(text) : text;
}

function expandTabs(text) {
  let out = "";
  for (const ch of text) {
    if (ch === "\t") out += " ".repeat(8 - (out.length % 8));
    else out += ch;
  }
  return out;
}

/** The visible text of a line, without escape codes. */
export function plainText(content) {
  const text = lastFrame(content);
  if (!text.includes("\x1b")) return text.replace(CONTROLS, "");
  return text.replace(ESCAPES, "").replace(CONTROLS, "");
}

/**
 * Spans of a line: [{text, cls, style}] where cls is a class list ("fg1 b") and style is
 * null or an object of CSS properties.
 */
export function parseAnsi(content) {
  const text = lastFrame(content);
  if (!text.includes("\x1b")) return [{ text: text.replace(CONTROLS, ""), cls: "", style: null }];
  const spans = [];
  let fg = null; // number 0..15 or css colour string
  let bg = null;
  let bold = false;
  let dim = false;
  let italic = false;
  let underline = false;
  let last = 0;
  const push = (chunk) => {
    chunk = chunk.replace(CONTROLS, "");
    if (!chunk) return;
    const classes = [];
    let style = null;
    if (typeof fg === "number") classes.push(`fg${fg}`);
    else if (fg) style = { color: fg };
    if (typeof bg === "number") classes.push(`bg${bg}`);
    else if (bg) style = { ...(style || {}), backgroundColor: bg };
    if (bold) classes.push("b");
    if (dim) classes.push("dim");
    if (italic) classes.push("i");
    if (underline) classes.push("u");
    spans.push({ text: chunk, cls: classes.join(" "), style });
  };
  ESCAPES.lastIndex = 0;
  let match;
  while ((match = ESCAPES.exec(text)) !== null) {
    push(text.slice(last, match.index));
    last = ESCAPES.lastIndex;
    if (match[2] !== "m") continue;
    const codes = (match[1] || "0").split(/[;:]/).map((c) => (c === "" ? 0 : Number(c)));
    for (let i = 0; i < codes.length; i++) {
      const c = codes[i];
      if (c === 0) {
        fg = bg = null;
        bold = dim = italic = underline = false;
      } else if (c === 1) bold = true;
      else if (c === 2) dim = true;
      else if (c === 3) italic = true;
      else if (c === 4) underline = true;
      else if (c === 22) bold = dim = false;
      else if (c === 23) italic = false;
      else if (c === 24) underline = false;
      else if (c >= 30 && c <= 37) fg = c - 30;
      else if (c === 39) fg = null;
      else if (c >= 40 && c <= 47) bg = c - 40;
      else if (c === 49) bg = null;
      else if (c >= 90 && c <= 97) fg = c - 90 + 8;
      else if (c >= 100 && c <= 107) bg = c - 100 + 8;
      else if (c === 38 || c === 48) {
        let value = null;
        if (codes[i + 1] === 5 && i + 2 < codes.length) {
          const n = codes[i + 2];
          value = n < 16 ? n : color256(n);
          i += 2;
        } else if (codes[i + 1] === 2 && i + 4 < codes.length) {
          value = `rgb(${codes[i + 2]},${codes[i + 3]},${codes[i + 4]})`;
          i += 4;
        }
        if (c === 38) fg = value;
        else bg = value;
      }
    }
  }
  push(text.slice(last));
  if (!spans.length) spans.push({ text: "", cls: "", style: null });
  return spans;
}
