// Small shared pieces: navigation, status badges, times, forms and data loading.

import { useCallback, useEffect, useRef, useState } from "preact/hooks";

// -- navigation (History API) ---------------------------------------------------------------

const routeListeners = new Set();

export function navigate(to, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  routeListeners.forEach((fn) => fn());
  if (!to.includes("#")) window.scrollTo(0, 0);
}

export function useLocation() {
  const [location, setLocation] = useState(() => ({ ...window.location }));
  useEffect(() => {
    const update = () => setLocation({ ...window.location });
    routeListeners.add(update);
    window.addEventListener("popstate", update);
    return () => {
      routeListeners.delete(update);
      window.removeEventListener("popstate", update);
    };
  }, []);
  return location;
}

export function Link({ href, children, ...rest }) {
  const onClick = (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey)
      return;
    e.preventDefault();
    navigate(href);
  };
  return (
    <a href={href} onClick={onClick} {...rest}>
      {children}
    </a>
  );
}

// -- roles ----------------------------------------------------------------------------------

const POLICY = {
  runners: ["owner", "admin", "developer"],
  manageRunners: ["owner", "admin"],
  users: ["owner", "admin"],
  audit: ["owner", "admin"],
  settings: ["owner", "admin"],
  apiTokens: ["owner", "admin", "developer"],
  createProject: ["owner", "admin"],
};

export function can(user, what) {
  return Boolean(user && POLICY[what] && POLICY[what].includes(user.role));
}

// -- status ---------------------------------------------------------------------------------

const SYMBOLS = {
  succeeded: "✓",
  failed: "✗",
  running: "▶",
  queued: "…",
  scheduled: "…",
  assigned: "▷",
  canceled: "⊘",
  timed_out: "⏱",
  expired: "–",
  online: "●",
  busy: "▶",
  offline: "○",
  draining: "⏸",
};

export const ACTIVE = ["queued", "scheduled", "assigned", "running"];
export const TERMINAL = ["succeeded", "failed", "canceled", "timed_out", "expired"];
export const STATUSES = [...ACTIVE, ...TERMINAL];

export function label(status) {
  return String(status || "").replace(/_/g, " ");
}

/** A status shown with a symbol and a word, never by colour alone. */
export function Status({ status }) {
  return (
    <span class={`status st-${status}`} data-status={status}>
      <span aria-hidden="true">{SYMBOLS[status] || "•"}</span> {label(status)}
    </span>
  );
}

// -- time -----------------------------------------------------------------------------------

export function formatDate(ts) {
  if (!ts) return "";
  const d = new Date(ts * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(
    d.getMinutes(),
  )}:${pad(d.getSeconds())}`;
}

export function ago(ts, now = Date.now() / 1000) {
  if (!ts) return "never";
  const s = Math.max(0, Math.round(now - ts));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function Ago({ ts }) {
  return ts ? <time datetime={new Date(ts * 1000).toISOString()} title={formatDate(ts)}>{ago(ts)}</time> : <span>never</span>;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || seconds < 0) return "";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

export function buildDuration(build, now = Date.now() / 1000) {
  if (!build.started_at) return "";
  return duration((build.finished_at || now) - build.started_at);
}

export function buildName(build) {
  const project = build.context?.project_name || "build";
  return `${project}#${build.build_number}`;
}

// -- data loading ---------------------------------------------------------------------------

/** Runs load() now and whenever deps change; reload() runs it again. */
export function useLoad(load, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const seq = useRef(0);
  const run = useCallback(() => {
    const mine = ++seq.current;
    setState((s) => ({ ...s, loading: true }));
    Promise.resolve()
      .then(load)
      .then(
        (data) => mine === seq.current && setState({ data, error: null, loading: false }),
        (error) => mine === seq.current && setState((s) => ({ data: s.data, error, loading: false })),
      );
  }, deps);
  useEffect(run, [run]);
  return { ...state, reload: run, setData: (fn) => setState((s) => ({ ...s, data: fn(s.data) })) };
}

export function ErrorNote({ error }) {
  if (!error) return null;
  return (
    <p class="error" role="alert">
      <span aria-hidden="true">⚠ </span>
      {error.message}
      {error.code ? <code class="code">{error.code}</code> : null}
    </p>
  );
}

/** A button that runs an async action, shows it is busy and reports its error. */
export function Action({ run, children, class: cls = "", confirm: question, onError, ...rest }) {
  const [busy, setBusy] = useState(false);
  const onClick = async () => {
    if (question && !window.confirm(question)) return;
    setBusy(true);
    try {
      await run();
    } catch (err) {
      if (onError) onError(err);
      else window.alert(err.message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <button type="button" class={cls} disabled={busy} aria-busy={busy ? "true" : undefined} onClick={onClick} {...rest}>
      {children}
    </button>
  );
}

export function Field({ label: text, children, hint, error, id }) {
  return (
    <div class={`field${error ? " invalid" : ""}`}>
      <label for={id}>{text}</label>
      {children}
      {hint ? <small class="hint">{hint}</small> : null}
      {error ? (
        <small class="problem" role="alert">
          {error}
        </small>
      ) : null}
    </div>
  );
}

let nextId = 0;
export function useId(prefix = "f") {
  const ref = useRef(null);
  if (ref.current === null) ref.current = `${prefix}-${++nextId}`;
  return ref.current;
}

/** A secret shown once, with a copy button. */
export function ShownOnce({ title, value, onDone }) {
  const [copied, setCopied] = useState(false);
  return (
    <div class="shown-once" role="status">
      <p>
        <strong>{title}</strong> It is shown only once: copy it now.
      </p>
      <code class="secret" data-testid="secret">{value}</code>
      <div class="row">
        <button
          type="button"
          onClick={async () => {
            try {
              await navigator.clipboard.writeText(value);
              setCopied(true);
            } catch {
              setCopied(false);
            }
          }}
        >
          {copied ? "Copied" : "Copy"}
        </button>
        {onDone ? (
          <button type="button" onClick={onDone}>
            Done
          </button>
        ) : null}
      </div>
    </div>
  );
}

export function Pager({ offset, limit, total, onChange }) {
  if (total <= limit && offset === 0) return null;
  const page = Math.floor(offset / limit) + 1;
  const pages = Math.max(1, Math.ceil(total / limit));
  return (
    <nav class="pager" aria-label="Pages">
      <button type="button" disabled={offset === 0} onClick={() => onChange(Math.max(0, offset - limit))}>
        ← Previous
      </button>
      <span>
        Page {page} of {pages} ({total})
      </span>
      <button type="button" disabled={offset + limit >= total} onClick={() => onChange(offset + limit)}>
        Next →
      </button>
    </nav>
  );
}
